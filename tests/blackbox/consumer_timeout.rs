//! The consumer (delivery acknowledgement) timeout: RabbitMQ's `consumer_timeout` setting (our
//! `--consumer-timeout`), the `x-consumer-timeout` queue argument and the `x-consumer-timeout`
//! consumer argument. A delivery left unacknowledged too long closes its channel with 406 and
//! RabbitMQ's text; the channel's unacked messages go back to the queue.

use std::time::{Duration, Instant};

use crate::common::process::{BrokerProcess, DataDir};
use crate::common::*;
use crate::extensions::{args, declare_with, long};

/// RabbitMQ's reply text for a timed-out delivery on `channel`.
fn timed_out_text(channel: u16, timeout_ms: u64) -> String {
    format!(
        "PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out. Timeout value used: \
         {timeout_ms} ms. This timeout value can be configured, see consumers doc guide to learn more"
    )
}

/// A consumer in acknowledged mode with `arguments`.
async fn consume_with(ch: &Channel, queue: &str, arguments: FieldTable) -> Inbox {
    let consumer = within(T, ch.basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), arguments))
        .await
        .unwrap_or_else(|e| panic!("basic.consume on {queue}: {e}"));
    inbox_of(consumer)
}

/// Takes one delivery and never acknowledges it: the channel must be closed with 406 and
/// RabbitMQ's text about `timeout_ms`, no sooner than the timeout and well within a second
/// after it. Returns the delivered body.
async fn expect_timeout_close(ch: &Channel, inbox: &mut Inbox, timeout_ms: u64) -> String {
    let delivery = inbox.expect(5).await;
    let delivered = Instant::now();
    let reason = inbox.expect_error(406, 5).await;
    let waited = delivered.elapsed();
    assert_eq!(reason, timed_out_text(ch.id(), timeout_ms));
    let timeout = Duration::from_millis(timeout_ms);
    assert!(waited + Duration::from_millis(100) >= timeout, "closed after {waited:?}, before the timeout");
    assert!(waited <= timeout + Duration::from_millis(1500), "closed only after {waited:?}");
    text(&delivery.data)
}

shard_tests! {
    /// RabbitMQ (x-consumer-timeout queue argument): a consumer that never acks has its
    /// channel closed with 406 PRECONDITION_FAILED; the message goes back to the queue and is
    /// redelivered, marked redelivered, to another consumer.
    async fn unacked_delivery_past_queue_timeout_closes_the_channel(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let (stuck, other) = (open_channel(&conn).await, open_channel(&conn).await);
        let q = unique("q-consumer-timeout");
        declare_with(&other, &q, args(&[("x-consumer-timeout", long(500))])).await.expect("declare");
        let mut inbox = consume_with(&stuck, &q, FieldTable::default()).await;
        publish(&other, "", &q, b"slow job").await;
        assert_eq!(expect_timeout_close(&stuck, &mut inbox, 500).await, "slow job");
        let mut next = consume_with(&other, &q, FieldTable::default()).await;
        let again = next.expect(5).await;
        assert_eq!((text(&again.data), again.redelivered), ("slow job".to_string(), true));
        within(T, other.basic_ack(again.delivery_tag, BasicAckOptions::default())).await.expect("ack");
        cleanup_queue(&other, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ: deliveries acknowledged within the timeout never close the channel, however
    /// long the consumer lives.
    async fn deliveries_acked_in_time_keep_the_channel_open(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-consumer-timeout-acked");
        declare_with(&ch, &q, args(&[("x-consumer-timeout", long(500))])).await.expect("declare");
        let mut inbox = consume_with(&ch, &q, FieldTable::default()).await;
        for i in 0..4 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
            let delivery = inbox.expect(5).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            within(T, ch.basic_ack(delivery.delivery_tag, BasicAckOptions::default())).await.expect("ack in time");
        }
        inbox.expect_nothing(1000).await;
        assert_eq!(message_count(&ch, &q).await, 0, "the channel is still open and every message acked");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ applies the timeout to basic.get in acknowledged mode too.
    async fn unacked_basic_get_past_timeout_closes_the_channel(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let (getter, other) = (open_channel(&conn).await, open_channel(&conn).await);
        let q = unique("q-consumer-timeout-get");
        declare_with(&other, &q, args(&[("x-consumer-timeout", long(500))])).await.expect("declare");
        publish(&other, "", &q, b"fetched").await;
        wait_message_count(&other, &q, 1, 5).await;
        let mut watch = watch_channel(&getter).await;
        get(&getter, &q, false).await.expect("basic.get");
        assert_eq!(watch.expect_error(406, 5).await, timed_out_text(getter.id(), 500));
        wait_message_count(&other, &q, 1, 5).await;
        let again = get(&other, &q, true).await.expect("back in the queue");
        assert!(again.delivery.redelivered);
        cleanup_queue(&other, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ 4.3: the consumer argument x-consumer-timeout takes precedence over the
    /// queue's, in both directions.
    async fn consumer_argument_overrides_the_queue_timeout(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let (short, long_lived, admin) = (open_channel(&conn).await, open_channel(&conn).await, open_channel(&conn).await);
        let (lenient, strict) = (unique("q-lenient"), unique("q-strict"));
        declare_with(&admin, &lenient, args(&[("x-consumer-timeout", long(60_000))])).await.expect("declare lenient");
        declare_with(&admin, &strict, args(&[("x-consumer-timeout", long(500))])).await.expect("declare strict");
        let mut short_inbox = consume_with(&short, &lenient, args(&[("x-consumer-timeout", long(500))])).await;
        let mut long_inbox = consume_with(&long_lived, &strict, args(&[("x-consumer-timeout", long(60_000))])).await;
        publish(&admin, "", &lenient, b"a").await;
        publish(&admin, "", &strict, b"b").await;
        assert_eq!(expect_timeout_close(&short, &mut short_inbox, 500).await, "a");
        long_inbox.expect(5).await;
        long_inbox.expect_nothing(1500).await;
        assert_eq!(message_count(&long_lived, &strict).await, 0, "the consumer's 60 s timeout kept its channel open");
        cleanup_queue(&admin, &lenient).await;
        cleanup_queue(&admin, &strict).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ 4.3 checks both forms of x-consumer-timeout: an integer ≥ 0, else 406 with
    /// its invalid-argument text.
    async fn negative_consumer_timeout_is_406(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let q = unique("q-bad-timeout");
        let reason = format!("PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue '{q}' in vhost '/': {{value_negative,-1}}");
        let ch = open_channel(&conn).await;
        expect_close_text(declare_with(&ch, &q, args(&[("x-consumer-timeout", long(-1))])).await, 406, &reason);
        let ch = open_channel(&conn).await;
        declare_queue(&ch, &q).await;
        let consume = ch.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions::default(), args(&[("x-consumer-timeout", long(-1))]));
        expect_close_text(within(T, consume).await, 406, &reason);
        let ch = open_channel(&conn).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }
}

restart_tests! {
    /// RabbitMQ's `consumer_timeout` setting (our --consumer-timeout): applies to queues
    /// without an x-consumer-timeout of their own.
    async fn broker_consumer_timeout_flag_closes_the_channel(shards: usize) {
        let data = DataDir::new();
        let broker = BrokerProcess::start(data.path(), shards, &["--consumer-timeout", "500"]);
        let conn = connect(broker.uri()).await;
        let (stuck, other) = (open_channel(&conn).await, open_channel(&conn).await);
        let q = unique("q-broker-timeout");
        declare_queue(&other, &q).await;
        let mut inbox = consume_with(&stuck, &q, FieldTable::default()).await;
        publish(&other, "", &q, b"job").await;
        assert_eq!(expect_timeout_close(&stuck, &mut inbox, 500).await, "job");
        wait_message_count(&other, &q, 1, 5).await;
        close_conn(&conn).await;
        broker.stop_cleanly();
    }
}
