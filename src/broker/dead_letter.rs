//! The properties of a dead-lettered message, as RabbitMQ writes them: an `x-death` header
//! (an array of tables, newest first, one per (queue, reason) with a count) and the
//! `x-first-death-*` headers (RabbitMQ 3.10 writes no `x-last-death-*`: those came with 3.13); a per-message `expiration` is removed and
//! kept in the entry as `original-expiration`, so the copy does not expire again by itself.
//!
//! Also RabbitMQ's cycle rule: a message that would go back to a queue it already died in,
//! with no rejection in between, is dropped instead. Pure functions; the owner shard routes
//! and publishes the result.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};

use crate::codec::hotpath::{self, CodecError};
use crate::codec::message::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathReason {
    /// basic.reject or basic.nack without requeue.
    Rejected,
    /// The message or queue TTL ran out.
    Expired,
    /// Dropped or refused by x-max-length / x-max-length-bytes.
    MaxLength,
    /// Returned to its queue more often than the queue's `x-delivery-limit`.
    DeliveryLimit,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLength => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// One death, as recorded in `x-death`.
pub struct Death<'a> {
    pub reason: DeathReason,
    pub queue: &'a str,
    pub time_secs: u64,
}

/// The new properties and the (queue, reason) history, newest first.
pub struct DeadProperties {
    pub properties: Vec<u8>,
    pub history: Vec<(String, String)>,
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

fn field_text(table: &FieldTable, key: &str) -> Option<String> {
    match table.inner().get(key)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_string()),
        _ => None,
    }
}

fn field_count(table: &FieldTable) -> i64 {
    match table.inner().get("count") {
        Some(AMQPValue::LongLongInt(count)) => *count,
        Some(AMQPValue::LongInt(count)) => i64::from(*count),
        _ => 1,
    }
}

/// Builds the x-death entry list: the (queue, reason) entry counted up and moved first, or
/// `entry` in front.
fn updated_deaths(previous: Option<&AMQPValue>, entry: FieldTable, death: &Death<'_>) -> Vec<AMQPValue> {
    let mut deaths: Vec<AMQPValue> = match previous {
        Some(AMQPValue::FieldArray(array)) => array.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = deaths.iter().position(|value| match value {
        AMQPValue::FieldTable(table) => {
            field_text(table, "queue").as_deref() == Some(death.queue)
                && field_text(table, "reason").as_deref() == Some(death.reason.as_str())
        }
        _ => false,
    });
    let mut entry = entry;
    if let Some(index) = same {
        // RabbitMQ keeps the first entry's fields and counts up.
        if let AMQPValue::FieldTable(mut old) = deaths.remove(index) {
            old.insert("count".into(), AMQPValue::LongLongInt(field_count(&old).saturating_add(1)));
            entry = old;
        }
    }
    deaths.insert(0, AMQPValue::FieldTable(entry));
    deaths
}

/// The properties a dead-lettered copy of `message` carries.
pub fn dead_properties(message: &Message, death: &Death<'_>) -> Result<DeadProperties, CodecError> {
    let properties = hotpath::parse_properties(&message.properties)?;
    let mut headers = properties.headers().clone().unwrap_or_default();
    let exchange = String::from_utf8_lossy(&message.exchange).into_owned();
    let routing_key = String::from_utf8_lossy(&message.routing_key).into_owned();
    let mut entry = FieldTable::default();
    entry.insert("count".into(), AMQPValue::LongLongInt(1));
    entry.insert("reason".into(), long_string(death.reason.as_str()));
    entry.insert("queue".into(), long_string(death.queue));
    entry.insert("time".into(), AMQPValue::Timestamp(death.time_secs));
    entry.insert("exchange".into(), long_string(&exchange));
    entry.insert("routing-keys".into(), AMQPValue::FieldArray(FieldArray::from(vec![long_string(&routing_key)])));
    if let Some(expiration) = properties.expiration() {
        entry.insert("original-expiration".into(), long_string(expiration.as_str()));
    }
    let deaths = updated_deaths(headers.inner().get("x-death"), entry, death);
    let history = deaths
        .iter()
        .filter_map(|value| match value {
            AMQPValue::FieldTable(table) => Some((field_text(table, "queue")?, field_text(table, "reason")?)),
            _ => None,
        })
        .collect();
    headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(deaths)));
    for (suffix, value) in [("reason", death.reason.as_str()), ("queue", death.queue), ("exchange", &exchange)] {
        let first = format!("x-first-death-{suffix}");
        if !headers.inner().contains_key(first.as_str()) {
            headers.insert(first.as_str().into(), long_string(value));
        }
    }
    let rebuilt = without_expiration(&properties).with_headers(headers);
    Ok(DeadProperties { properties: hotpath::encode_properties(&rebuilt)?, history })
}

/// A copy of `properties` without `expiration` (amq-protocol has setters only).
fn without_expiration(properties: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(value) = properties.content_type() {
        copy = copy.with_content_type(value.clone());
    }
    if let Some(value) = properties.content_encoding() {
        copy = copy.with_content_encoding(value.clone());
    }
    if let Some(value) = properties.delivery_mode() {
        copy = copy.with_delivery_mode(*value);
    }
    if let Some(value) = properties.priority() {
        copy = copy.with_priority(*value);
    }
    if let Some(value) = properties.correlation_id() {
        copy = copy.with_correlation_id(value.clone());
    }
    if let Some(value) = properties.reply_to() {
        copy = copy.with_reply_to(value.clone());
    }
    if let Some(value) = properties.message_id() {
        copy = copy.with_message_id(value.clone());
    }
    if let Some(value) = properties.timestamp() {
        copy = copy.with_timestamp(*value);
    }
    if let Some(value) = properties.kind() {
        copy = copy.with_type(value.clone());
    }
    if let Some(value) = properties.user_id() {
        copy = copy.with_user_id(value.clone());
    }
    if let Some(value) = properties.app_id() {
        copy = copy.with_app_id(value.clone());
    }
    if let Some(value) = properties.cluster_id() {
        copy = copy.with_cluster_id(value.clone());
    }
    copy
}

/// RabbitMQ's cycle rule for one destination queue: it appears in the history, and no death
/// from the newest one down to its own was a rejection.
pub fn is_cycle(history: &[(String, String)], queue: &str) -> bool {
    let Some(position) = history.iter().position(|(name, _)| name == queue) else {
        return false;
    };
    history[..=position].iter().all(|(_, reason)| reason != DeathReason::Rejected.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(properties: &BasicProperties) -> Message {
        Message {
            exchange: Bytes::from_static(b"ex"),
            routing_key: Bytes::from_static(b"rk"),
            properties: Bytes::from(hotpath::encode_properties(properties).expect("encode")),
            body: Bytes::new(),
        }
    }

    fn deaths_of(properties: &[u8]) -> Vec<FieldTable> {
        let parsed = hotpath::parse_properties(properties).expect("parse");
        match parsed.headers().as_ref().and_then(|headers| headers.inner().get("x-death").cloned()) {
            Some(AMQPValue::FieldArray(array)) => array
                .as_slice()
                .iter()
                .filter_map(|value| match value {
                    AMQPValue::FieldTable(table) => Some(table.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn second_death_in_same_queue_counts_up_and_drops_expiration() {
        let original = message(&BasicProperties::default().with_expiration("100".into()));
        let death = Death { reason: DeathReason::Expired, queue: "q", time_secs: 1 };
        let first = dead_properties(&original, &death).expect("first");
        let again = Message { properties: Bytes::from(first.properties), ..original };
        let second = dead_properties(&again, &death).expect("second");
        let parsed = hotpath::parse_properties(&second.properties).expect("parse");
        assert!(parsed.expiration().is_none(), "expiration removed");
        let deaths = deaths_of(&second.properties);
        assert_eq!(deaths.len(), 1);
        assert_eq!(field_count(&deaths[0]), 2);
        assert_eq!(field_text(&deaths[0], "original-expiration").as_deref(), Some("100"));
        assert!(is_cycle(&second.history, "q"));
    }

    #[test]
    fn rejection_in_history_breaks_the_cycle() {
        let history = vec![("a".to_string(), "expired".to_string()), ("b".to_string(), "rejected".to_string())];
        assert!(is_cycle(&history, "a"));
        assert!(!is_cycle(&history, "b"));
        assert!(!is_cycle(&history, "c"));
    }
}
