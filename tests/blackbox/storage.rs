//! Durability: what survives a restart (SIGTERM) and a crash (SIGKILL), what recovery does with
//! a damaged segment or marks file, the data-directory lock, and a store that fails to write.
//! Each test starts its own brokers on a data directory it keeps across restarts, so these
//! tests never run against an external broker.

mod compaction;
mod damage;
mod definitions;
mod failures;
mod fanout;
mod messages;
mod on_disk;
mod packing;
mod paging;
mod stream;

use crate::common::*;

/// delivery_mode 2: the broker must store the message in a durable queue.
pub fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// delivery_mode 1: the message lives in memory only.
pub fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

/// A connection with a channel in confirm mode.
pub async fn confirm_channel(uri: &str) -> (Connection, Channel) {
    let (conn, ch) = connect_channel(uri).await;
    within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
    (conn, ch)
}

pub async fn declare_durable_queue(ch: &Channel, name: &str) {
    declare_queue_with(ch, name, QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }).await;
}

/// Publishes every body with `properties` and waits for all confirms, which must be acks.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    bodies: &[String],
    properties: BasicProperties,
) {
    let mut confirms = Vec::with_capacity(bodies.len());
    for body in bodies {
        let publish = ch.basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties.clone(),
        );
        confirms.push(within(T, publish).await.unwrap_or_else(|e| panic!("basic.publish {body}: {e}")));
    }
    for (body, confirm) in bodies.iter().zip(confirms) {
        let confirmation = within(T, confirm).await.unwrap_or_else(|e| panic!("confirm of {body}: {e}"));
        assert!(confirmation.is_ack(), "{body} was not confirmed: {confirmation:?}");
    }
}

/// Publishes one body with `properties` and waits for its confirm, which must be an ack.
pub async fn publish_one_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &str,
    properties: BasicProperties,
) {
    publish_confirmed(ch, exchange, routing_key, &[body.to_string()], properties).await;
}

/// basic.publish of `body` to `queue` through the default exchange; returns the confirm.
pub async fn publish_to_queue(
    ch: &Channel,
    queue: &str,
    body: &str,
    properties: BasicProperties,
) -> lapin::Result<lapin::PublisherConfirm> {
    ch.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body.as_bytes(), properties).await
}

pub async fn bind(ch: &Channel, queue: &str, exchange: &str, routing_key: &str) {
    let bind = ch.queue_bind(
        queue.into(),
        exchange.into(),
        routing_key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    );
    within(T, bind).await.unwrap_or_else(|e| panic!("queue.bind {queue} to {exchange}: {e}"));
}

/// Numbered bodies `{prefix}-0000…` padded to varied lengths, so records do not line up.
pub fn numbered_bodies(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|index| format!("{prefix}-{index:04}-{}", "x".repeat(index * 37 % 300))).collect()
}

/// A message as a consumer sees it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub body: String,
    pub redelivered: bool,
}

/// `bodies` as a consumer should see them, all with the same redelivered flag.
pub fn flagged(bodies: &[String], redelivered: bool) -> Vec<Got> {
    bodies.iter().map(|body| Got { body: body.clone(), redelivered }).collect()
}

/// Takes every message of `queue` with basic.get (no_ack), in order, until it is empty.
pub async fn get_all(ch: &Channel, queue: &str) -> Vec<Got> {
    let mut got = Vec::new();
    while let Some(message) = get(ch, queue, true).await {
        got.push(Got { body: text(&message.delivery.data), redelivered: message.delivery.redelivered });
        assert!(got.len() <= 100_000, "{queue} never runs empty");
    }
    got
}

/// The bodies of every message of `queue`, in order (taken, so the queue ends empty).
pub async fn drain_bodies(uri: &str, queue: &str) -> Vec<String> {
    let (conn, ch) = connect_channel(uri).await;
    let bodies = get_all(&ch, queue).await.into_iter().map(|got| got.body).collect();
    close_conn(&conn).await;
    bodies
}

/// Asserts that a passive declare of `queue` fails with 404 (on a channel of its own).
pub async fn assert_queue_missing(conn: &Connection, queue: &str) {
    let ch = open_channel(conn).await;
    let passive = QueueDeclareOptions::default().passive();
    let result = within(T, ch.queue_declare(queue.into(), passive, FieldTable::default())).await;
    expect_close(result, 404);
}

/// Asserts that a passive declare of `exchange` fails with 404 (on a channel of its own).
pub async fn assert_exchange_missing(conn: &Connection, exchange: &str) {
    let ch = open_channel(conn).await;
    let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
    let result =
        within(T, ch.exchange_declare(exchange.into(), ExchangeKind::Direct, passive, FieldTable::default())).await;
    expect_close(result, 404);
}
