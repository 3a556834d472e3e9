//! Delayed messages, as RabbitMQ's `rabbitmq_delayed_message_exchange` plugin does them: an
//! exchange of type `x-delayed-message` routes as its `x-delayed-type` (direct, fanout, topic,
//! headers, x-consistent-hash), but a message whose `x-delay` header is an integer from 1 to
//! `DELAY_MAX_MS` is held for that many milliseconds and routed with the exchange's bindings
//! of that moment. A missing, zero, negative, too large or non-integer `x-delay` routes at once.
//!
//! What is decided here, without I/O: the declare check, a message's delay, and how a held
//! message is stored (`shard/delayed.rs` holds and times them). A persistent message held by a
//! durable delayed exchange is stored in the holding shard's log as a message record of a
//! reserved queue sequence (`pending_queue_sequence`, beyond every real queue's), its due time
//! in the deadline field and its vhost in the exchange field (`"vhost\0exchange"`), so the
//! store's records, marks, sync batches and recovery carry it without a record kind of their own.
//!
//! When due, a stored held message goes to each queue as a `HandoverCopy`, which the queue's
//! shard stores right after a hand-over record naming the held message (`store::handover`); after
//! a crash, recovery's proofs (`handovers.rs`) leave out the queues that hold a copy already
//! (`lacking_copies`).

use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable};

use super::error::{AmqpError, COMMAND_INVALID, PRECONDITION_FAILED};
use super::handovers::HandedOver;
use super::queue_args::{integer, text};
use super::routing::ExchangeKind;
use super::snapshot::Exchange;
use crate::codec::message::Message;
use crate::ids::{Holder, QueueId};
use crate::store::handover::StoredId;

/// The plugin's ceiling (`?ERL_MAX_T`, Erlang's largest timer): a larger `x-delay` routes at once.
pub const DELAY_MAX_MS: i64 = 4_294_967_295;

/// Queue sequences from here on name the held messages of shard `n` (`BASE + n`): a real
/// queue's sequence has 48 bits (`ids::QueueId`).
const PENDING_QUEUE_SEQUENCE_BASE: u64 = 1 << 62;

/// The reserved queue sequence under which shard `shard` stores the messages it holds.
pub fn pending_queue_sequence(shard: usize) -> u64 {
    PENDING_QUEUE_SEQUENCE_BASE + shard as u64
}

/// The shard whose held messages a recovered queue sequence names; None for a real queue.
pub fn pending_shard(queue_sequence: u64) -> Option<usize> {
    queue_sequence.checked_sub(PENDING_QUEUE_SEQUENCE_BASE).and_then(|shard| usize::try_from(shard).ok())
}

/// Whether `exchange` holds messages with an `x-delay` header until they are due.
pub fn is_delayed(exchange: &Exchange) -> bool {
    exchange.kind == ExchangeKind::DelayedMessage
}

/// The type a delayed exchange routes as (validated when declared: a known type, never
/// `x-delayed-message`); `DelayedMessage` when the argument is missing or unknown.
pub fn delayed_type(arguments: &FieldTable) -> ExchangeKind {
    arguments
        .inner()
        .get("x-delayed-type")
        .and_then(text)
        .and_then(|name| ExchangeKind::parse(&name))
        .unwrap_or(ExchangeKind::DelayedMessage)
}

/// The plugin's checks of `x-delayed-type` when an `x-delayed-message` exchange is declared:
/// missing or not a string is 406, `x-delayed-message` itself is 406, an unknown type is the
/// connection error 503 that exchange.declare of that type gets.
pub fn validate_arguments(arguments: &FieldTable) -> Result<(), AmqpError> {
    let must_exist =
        || AmqpError::new(PRECONDITION_FAILED, "Invalid argument, 'x-delayed-type' must be an existing exchange type");
    let name = match arguments.inner().get("x-delayed-type") {
        Some(AMQPValue::LongString(name)) => String::from_utf8_lossy(name.as_bytes()).into_owned(),
        _ => return Err(must_exist()),
    };
    match ExchangeKind::parse(&name) {
        Some(ExchangeKind::DelayedMessage) => Err(AmqpError::new(
            PRECONDITION_FAILED,
            "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
        )),
        Some(_) => Ok(()),
        None => Err(AmqpError::new(COMMAND_INVALID, format!("unknown exchange type '{name}'"))),
    }
}

/// How long to hold `message` (ms): None routes it at once.
pub fn delay_ms(message: &Message) -> Option<u64> {
    let delay = message.headers()?.inner().get("x-delay").and_then(integer)?;
    (1..=DELAY_MAX_MS).contains(&delay).then_some(delay as u64)
}

/// The exchange field of a held message's record: the vhost's length (two bytes, big-endian),
/// the vhost, then the exchange (names are AMQP short strings, any byte allowed).
pub fn stored_exchange_field(vhost: &str, exchange: &[u8]) -> Vec<u8> {
    let length = u16::try_from(vhost.len()).unwrap_or(u16::MAX);
    [&length.to_be_bytes()[..], &vhost.as_bytes()[..usize::from(length)], exchange].concat()
}

/// A due stored held message's copy for one queue (holder → the queue's owner shard): published
/// like any message, its confirm going back to `publisher` (the holder), and stored right after
/// a hand-over record naming `held`.
#[derive(Debug)]
pub struct HandoverCopy {
    pub queue: QueueId,
    pub message: Arc<Message>,
    pub publisher: Holder,
    pub publish_sequence: u64,
    pub held: StoredId,
}

/// Keeps of `routes` the queues that hold no copy of the held message yet.
pub fn lacking_copies(routes: &mut Vec<QueueId>, handed_over: &[HandedOver]) {
    routes.retain(|queue| !handed_over.iter().any(|copy| copy.queue_sequence == queue.sequence()));
}

/// The vhost and exchange of a held message's record (`stored_exchange_field`).
pub fn split_stored_exchange(field: &[u8]) -> Option<(String, bytes::Bytes)> {
    let (length, rest) = field.split_first_chunk::<2>()?;
    let (vhost, exchange) = rest.split_at_checked(usize::from(u16::from_be_bytes(*length)))?;
    Some((std::str::from_utf8(vhost).ok()?.to_string(), bytes::Bytes::copy_from_slice(exchange)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use bytes::Bytes;

    fn with_headers(headers: Option<FieldTable>) -> Message {
        let mut properties = BasicProperties::default();
        if let Some(headers) = headers {
            properties = properties.with_headers(headers);
        }
        let properties = crate::codec::hotpath::encode_properties(&properties).expect("encodable");
        Message {
            exchange: Bytes::from_static(b"x"),
            routing_key: Bytes::new(),
            properties: Bytes::from(properties),
            body: Bytes::new(),
        }
    }

    fn delay_of(value: AMQPValue) -> Option<u64> {
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), value);
        delay_ms(&with_headers(Some(headers)))
    }

    #[test]
    fn only_a_positive_integer_delay_holds_a_message() {
        assert_eq!(delay_of(AMQPValue::LongInt(1500)), Some(1500));
        assert_eq!(delay_of(AMQPValue::ShortShortUInt(7)), Some(7));
        assert_eq!(delay_of(AMQPValue::LongLongInt(0)), None);
        assert_eq!(delay_of(AMQPValue::LongLongInt(-5)), None);
        assert_eq!(delay_of(AMQPValue::LongString("1000".into())), None);
        assert_eq!(delay_of(AMQPValue::LongLongInt(DELAY_MAX_MS + 1)), None);
        assert_eq!(delay_ms(&with_headers(None)), None);
        assert_eq!(delay_ms(&with_headers(Some(FieldTable::default()))), None);
    }

    fn arguments(kind: AMQPValue) -> FieldTable {
        let mut table = FieldTable::default();
        table.insert("x-delayed-type".into(), kind);
        table
    }

    #[test]
    fn x_delayed_type_is_checked_as_the_plugin_does() {
        assert!(validate_arguments(&arguments(AMQPValue::LongString("topic".into()))).is_ok());
        let missing = validate_arguments(&FieldTable::default()).expect_err("missing");
        assert_eq!(missing.reply_code, PRECONDITION_FAILED);
        assert!(missing.reply_text.ends_with("'x-delayed-type' must be an existing exchange type"));
        let itself = validate_arguments(&arguments(AMQPValue::LongString("x-delayed-message".into())));
        assert_eq!(itself.expect_err("itself").reply_code, PRECONDITION_FAILED);
        let unknown = validate_arguments(&arguments(AMQPValue::LongString("nope".into())));
        assert_eq!(unknown.expect_err("unknown").reply_code, COMMAND_INVALID);
        assert_eq!(delayed_type(&arguments(AMQPValue::LongString("fanout".into()))), ExchangeKind::Fanout);
    }

    /// After a crash, a held message goes again only to the queues no proof names.
    #[test]
    fn only_queues_without_a_copy_get_one_again() {
        let dir = std::env::temp_dir().join(format!("spatemq-lacking-copies-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let segment = Arc::new(crate::store::segment::Segment::create(&dir, 1, 4096).expect("a segment"));
        let routes = [QueueId::new(0, 5), QueueId::new(1, 6), QueueId::new(2, 7)];
        let copy = |queue_sequence| HandedOver { queue_sequence, segment: segment.clone() };
        let mut left = routes.to_vec();
        lacking_copies(&mut left, &[copy(6)]);
        assert_eq!(left, [routes[0], routes[2]]);
        lacking_copies(&mut left, &[copy(5), copy(7), copy(9)]);
        assert!(left.is_empty(), "every bound queue has its copy: the held message is only removed");
        let mut all = routes.to_vec();
        lacking_copies(&mut all, &[]);
        assert_eq!(all, routes);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stored_exchange_field_keeps_vhost_and_exchange() {
        let field = stored_exchange_field("/v\0h", b"del\0ayed");
        assert_eq!(split_stored_exchange(&field), Some(("/v\0h".to_string(), Bytes::from_static(b"del\0ayed"))));
        assert_eq!(pending_shard(pending_queue_sequence(3)), Some(3));
        assert_eq!(pending_shard(42), None);
    }
}
