//! The queue arguments RabbitMQ clients rely on (`x-message-ttl`, `x-expires`, `x-max-length`,
//! `x-max-length-bytes`, `x-overflow`, `x-dead-letter-exchange`, `x-dead-letter-routing-key`,
//! `x-delivery-limit`, `x-consumer-timeout`), checked at queue.declare and turned into the
//! typed settings a queue acts on; the consumer argument `x-consumer-timeout`, checked at
//! basic.consume; and the exchange argument `alternate-exchange`, checked at exchange.declare.
//!
//! `validate` refuses a bad argument with RabbitMQ's reply code and text shape
//! ("invalid arg '<name>' for queue '<q>' in vhost '<v>': <reason>"). `QueueArgs::from_table`
//! reads arguments that were validated when declared (or recovered from the definitions log)
//! and never fails. Nothing here does I/O.

use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable};

use super::error::{AmqpError, PRECONDITION_FAILED};

/// What a queue at its length limit does with one more message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The oldest ready message is dropped (or dead-lettered): RabbitMQ's default.
    #[default]
    DropHead,
    /// The new message is refused: a confirm-mode publisher gets basic.nack.
    RejectPublish,
    /// Refused as with `RejectPublish`, and dead-lettered.
    RejectPublishDlx,
}

/// Where a queue's dead messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterTarget {
    pub exchange: String,
    /// None: the message keeps its own routing key.
    pub routing_key: Option<String>,
}

/// The settings a queue acts on; all None for a plain queue.
#[derive(Clone, Debug, Default)]
pub struct QueueArgs {
    pub message_ttl_ms: Option<u64>,
    pub expires_ms: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter: Option<Arc<DeadLetterTarget>>,
    /// `x-max-priority`: the queue orders by the messages' `priority` property.
    pub max_priority: Option<u8>,
    /// `x-single-active-consumer`: only the oldest consumer gets messages.
    pub single_active_consumer: bool,
    /// `x-delivery-limit`: a message returned to the queue more often than this is
    /// dead-lettered (or dropped); its deliveries carry `x-delivery-count`.
    pub delivery_limit: Option<u64>,
}

/// Queue types this broker refuses rather than silently declaring a classic queue.
const QUEUE_TYPES_REFUSED: &[&str] = &["quorum", "stream"];

/// Any AMQP integer as i64; None for every other type (RabbitMQ accepts integers only).
pub fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortShortUInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortUInt(number) => Some(i64::from(*number)),
        AMQPValue::LongInt(number) => Some(i64::from(*number)),
        AMQPValue::LongUInt(number) => Some(i64::from(*number)),
        AMQPValue::LongLongInt(number) => Some(*number),
        _ => None,
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_string()),
        _ => None,
    }
}

/// RabbitMQ's name for a value's type, as it appears in `{unacceptable_type,...}`.
fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => "longstr",
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
        _ => "integer",
    }
}

/// Checks one integer argument: `Err(reason)` in RabbitMQ's notation.
fn check_integer(value: &AMQPValue, minimum: i64, maximum: i64) -> Result<i64, String> {
    let number = integer(value).ok_or_else(|| format!("{{unacceptable_type,{}}}", type_name(value)))?;
    if number < 0 && minimum >= 0 {
        return Err(format!("{{value_negative,{number}}}"));
    }
    if number == 0 && minimum > 0 {
        return Err(format!("{{value_zero,{number}}}"));
    }
    if number < minimum || number > maximum {
        return Err(format!("{{value_out_of_range,{number}}}"));
    }
    Ok(number)
}

fn check_text(value: &AMQPValue, allowed: &[&str]) -> Result<String, String> {
    let found = text(value).ok_or_else(|| format!("{{unacceptable_type,{}}}", type_name(value)))?;
    if !allowed.is_empty() && !allowed.contains(&found.as_str()) {
        return Err(format!("{{invalid_value,<<\"{found}\">>}}"));
    }
    Ok(found)
}

fn check_bool(value: &AMQPValue) -> Result<(), String> {
    match value {
        AMQPValue::Boolean(_) => Ok(()),
        other => Err(format!("{{unacceptable_type,{}}}", type_name(other))),
    }
}

/// Largest TTL RabbitMQ accepts (the Erlang timer limit).
const TTL_MAX_MS: i64 = 4_294_967_295;

fn check_argument(name: &str, value: &AMQPValue, arguments: &FieldTable) -> Result<(), String> {
    match name {
        "x-message-ttl" => check_integer(value, 0, TTL_MAX_MS).map(drop),
        "x-expires" => check_integer(value, 1, TTL_MAX_MS).map(drop),
        "x-max-length" | "x-max-length-bytes" | "x-delivery-limit" | "x-consumer-timeout" => {
            check_integer(value, 0, i64::MAX).map(drop)
        }
        "x-max-priority" => check_integer(value, 1, 255).map(drop),
        "x-overflow" => check_text(value, &["drop-head", "reject-publish", "reject-publish-dlx"]).map(drop),
        "x-dead-letter-exchange" => check_text(value, &[]).map(drop),
        "x-dead-letter-routing-key" => {
            check_text(value, &[])?;
            if arguments.inner().contains_key("x-dead-letter-exchange") {
                Ok(())
            } else {
                Err("{routing_key_but_no_dlx_defined}".into())
            }
        }
        "x-single-active-consumer" => check_bool(value),
        "x-queue-type" => {
            let kind = check_text(value, &[])?;
            if QUEUE_TYPES_REFUSED.contains(&kind.as_str()) {
                Err(format!("{kind} queues are not supported by this broker (only 'classic')"))
            } else {
                check_text(value, &["classic"]).map(drop)
            }
        }
        _ => Ok(()),
    }
}

/// Checks every argument RabbitMQ checks at queue.declare.
pub fn validate(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<(), AmqpError> {
    for (key, value) in arguments.inner() {
        let name = key.as_str();
        if let Err(reason) = check_argument(name, value, arguments) {
            let text = format!("invalid arg '{name}' for queue '{queue}' in vhost '{vhost}': {reason}");
            return Err(AmqpError::new(PRECONDITION_FAILED, text));
        }
    }
    Ok(())
}

/// Checks the exchange arguments RabbitMQ checks at exchange.declare: `alternate-exchange`
/// must be a string.
pub fn validate_exchange(arguments: &FieldTable, exchange: &str, vhost: &str) -> Result<(), AmqpError> {
    if let Some(value) = arguments.inner().get("alternate-exchange") {
        if let Err(reason) = check_text(value, &[]) {
            let text =
                format!("invalid arg 'alternate-exchange' for exchange '{exchange}' in vhost '{vhost}': {reason}");
            return Err(AmqpError::new(PRECONDITION_FAILED, text));
        }
    }
    Ok(())
}

/// The consumer argument `x-consumer-timeout` of basic.consume (ms, an integer ≥ 0, as RabbitMQ
/// 4.3 checks it), refused with the queue-argument text shape; None without one.
pub fn consumer_timeout_argument(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<Option<u64>, AmqpError> {
    let Some(value) = arguments.inner().get("x-consumer-timeout") else {
        return Ok(None);
    };
    match check_integer(value, 0, i64::MAX) {
        Ok(timeout_ms) => Ok(u64::try_from(timeout_ms).ok()),
        Err(reason) => {
            let text = format!("invalid arg 'x-consumer-timeout' for queue '{queue}' in vhost '{vhost}': {reason}");
            Err(AmqpError::new(PRECONDITION_FAILED, text))
        }
    }
}

/// The queue argument `x-consumer-timeout` (ms) of a declared queue, read without building the
/// rest of `QueueArgs` (the connection's shard reads it at basic.consume and basic.get).
pub fn queue_consumer_timeout(arguments: &FieldTable) -> Option<u64> {
    arguments.inner().get("x-consumer-timeout").and_then(integer).and_then(|number| u64::try_from(number).ok())
}

impl QueueArgs {
    /// Reads validated arguments; anything unexpected is ignored.
    pub fn from_table(arguments: &FieldTable) -> QueueArgs {
        let table = arguments.inner();
        let non_negative = |name: &str| table.get(name).and_then(integer).and_then(|number| u64::try_from(number).ok());
        let overflow = match table.get("x-overflow").and_then(text).as_deref() {
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            _ => Overflow::DropHead,
        };
        let dead_letter = table.get("x-dead-letter-exchange").and_then(text).map(|exchange| {
            let routing_key = table.get("x-dead-letter-routing-key").and_then(text);
            Arc::new(DeadLetterTarget { exchange, routing_key })
        });
        QueueArgs {
            message_ttl_ms: non_negative("x-message-ttl"),
            expires_ms: non_negative("x-expires").filter(|expires| *expires > 0),
            max_length: non_negative("x-max-length"),
            max_length_bytes: non_negative("x-max-length-bytes"),
            overflow,
            dead_letter,
            single_active_consumer: matches!(table.get("x-single-active-consumer"), Some(AMQPValue::Boolean(true))),
            max_priority: non_negative("x-max-priority").and_then(|max| u8::try_from(max).ok()),
            delivery_limit: non_negative("x-delivery-limit"),
        }
    }

    /// Whether the periodic sweep has anything to look at in this queue.
    pub fn timed(&self) -> bool {
        self.message_ttl_ms.is_some() || self.expires_ms.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::message::parse_expiration;
    use amq_protocol::types::LongString;

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (name, value) in entries {
            table.insert((*name).into(), value.clone());
        }
        table
    }

    fn reason(entries: &[(&str, AMQPValue)]) -> String {
        validate(&table(entries), "q", "/").expect_err("invalid").reply_text
    }

    #[test]
    fn negative_ttl_is_refused_with_rabbitmq_text() {
        let text = reason(&[("x-message-ttl", AMQPValue::LongInt(-1))]);
        assert!(
            text.ends_with("invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"),
            "{text}"
        );
    }

    #[test]
    fn wrong_types_and_values_are_refused() {
        let string = AMQPValue::LongString(LongString::from("x"));
        assert!(reason(&[("x-max-length", string.clone())]).contains("{unacceptable_type,longstr}"));
        assert!(reason(&[("x-overflow", string)]).contains("{invalid_value,<<\"x\">>}"));
        assert!(reason(&[("x-expires", AMQPValue::LongInt(0))]).contains("{value_zero,0}"));
        assert!(reason(&[("x-max-priority", AMQPValue::LongInt(256))]).contains("x-max-priority"));
        assert!(reason(&[("x-consumer-timeout", AMQPValue::LongInt(-1))]).contains("{value_negative,-1}"));
        let quorum = AMQPValue::LongString(LongString::from("quorum"));
        assert!(reason(&[("x-queue-type", quorum)]).contains("quorum queues are not supported"));
    }

    #[test]
    fn valid_arguments_are_read() {
        let arguments = table(&[
            ("x-message-ttl", AMQPValue::ShortInt(200)),
            ("x-overflow", AMQPValue::LongString(LongString::from("reject-publish-dlx"))),
            ("x-dead-letter-exchange", AMQPValue::LongString(LongString::from("dlx"))),
            ("x-queue-type", AMQPValue::LongString(LongString::from("classic"))),
        ]);
        validate(&arguments, "q", "/").expect("valid");
        let args = QueueArgs::from_table(&arguments);
        assert_eq!(args.message_ttl_ms, Some(200));
        assert_eq!(args.overflow, Overflow::RejectPublishDlx);
        assert_eq!(args.dead_letter.expect("dlx").exchange, "dlx");
        assert_eq!(parse_expiration("abc"), Err("no_integer".into()));
        assert_eq!(parse_expiration("1500"), Ok(1500));
    }

    #[test]
    fn consumer_timeout_argument_is_checked_and_read() {
        let valid = table(&[("x-consumer-timeout", AMQPValue::ShortInt(500))]);
        assert_eq!(consumer_timeout_argument(&valid, "q", "/"), Ok(Some(500)));
        assert_eq!(queue_consumer_timeout(&valid), Some(500));
        assert_eq!(consumer_timeout_argument(&FieldTable::default(), "q", "/"), Ok(None));
        let negative = table(&[("x-consumer-timeout", AMQPValue::LongLongInt(-5))]);
        let error = consumer_timeout_argument(&negative, "q", "/").expect_err("negative");
        assert!(
            error
                .reply_text
                .ends_with("invalid arg 'x-consumer-timeout' for queue 'q' in vhost '/': {value_negative,-5}"),
            "{}",
            error.reply_text
        );
    }
}
