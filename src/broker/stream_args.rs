//! What is particular to streams (`x-queue-type: stream`) at the protocol's edge: the stream
//! arguments of queue.declare (`x-max-age` and its units), the consumer argument
//! `x-stream-offset` of basic.consume, and the consumer rules RabbitMQ 3.10's
//! `rabbit_stream_queue` enforces (a prefetch and manual acks; no global qos, no basic.get,
//! no queue.purge, no basic.nack or basic.reject), with RabbitMQ's reply codes and texts.
//!
//! `queue_args` runs the declare checks; this file only adds those of streams. Nothing here
//! does I/O.

use amq_protocol::types::{AMQPValue, FieldTable};

use super::error::{AmqpError, NOT_IMPLEMENTED, PRECONDITION_FAILED};
use super::headers_match::type_name;
use super::queue_args::{integer, unacceptable_type, Reason};

/// `rabbit_stream_queue:capabilities/0`'s queue arguments, in RabbitMQ's order. Any other
/// argument a classic or quorum queue knows is refused ("... of queue type
/// rabbit_stream_queue").
pub const STREAM_ARGUMENTS: &[&str] = &[
    "x-max-length-bytes",
    "x-queue-type",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

const SECOND_MS: u64 = 1_000;
const DAY_MS: u64 = 24 * 3_600 * SECOND_MS;

/// The milliseconds of one unit of `x-max-age` (`rabbit_amqqueue:unit_value_in_ms/1`): a year
/// is 365 days and a month 30.
fn unit_ms(unit: &str) -> Option<u64> {
    match unit {
        "Y" => Some(365 * DAY_MS),
        "M" => Some(30 * DAY_MS),
        "D" => Some(DAY_MS),
        "h" => Some(3_600 * SECOND_MS),
        "m" => Some(60 * SECOND_MS),
        "s" => Some(SECOND_MS),
        _ => None,
    }
}

/// An age such as `7D`, `12h`, `30m`, `10s` (also `Y`, `M`) in milliseconds: a positive
/// number, then one unit. None for anything else. Ages beyond `u64` milliseconds saturate
/// (half a billion years keeps everything as surely as the exact figure would).
pub fn age_ms(text: &str) -> Option<u64> {
    let digits_end = text.find(|character: char| !character.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let unit_ms = unit_ms(unit)?;
    // Leading zeros aside, more than 20 digits is beyond u64 anyway.
    let number = digits.trim_start_matches('0');
    if number.is_empty() {
        return None;
    }
    let number = number.parse::<u64>().unwrap_or(u64::MAX);
    Some(number.saturating_mul(unit_ms))
}

/// `check_max_age_arg`: a long string holding an age. RabbitMQ 3.10 answers an age that does
/// not start with a digit (`"bogus"`, `"-1D"`) with a crash of the channel (541
/// INTERNAL_ERROR); this broker refuses it as it refuses `"7W"` (docs/differences.md).
pub fn check_max_age(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match value {
        AMQPValue::LongString(text) => match age_ms(&String::from_utf8_lossy(text.as_bytes())) {
            Some(_) => Ok(()),
            None => Err("invalid_max_age".into()),
        },
        other => Err(unacceptable_type(other)),
    }
}

/// The `x-max-age` of validated (or recovered) arguments, in milliseconds.
pub fn max_age_ms(arguments: &FieldTable) -> Option<u64> {
    match arguments.inner().get("x-max-age") {
        Some(AMQPValue::LongString(text)) => age_ms(&String::from_utf8_lossy(text.as_bytes())),
        _ => None,
    }
}

/// Where a new stream consumer starts (`x-stream-offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOffset {
    /// The oldest message the stream still holds.
    First,
    /// The start of the last chunk written: on one node, the first message of the last batch
    /// the shard wrote in one go.
    Last,
    /// The next message to arrive (the default).
    Next,
    /// This offset; one below the first goes to the first, one past the end waits for it.
    Offset(u64),
    /// The first message stored at or after this time (ms since the epoch).
    TimestampMs(u64),
}

/// Reads basic.consume's `x-stream-offset` (absent: `next`): `first`, `last`, `next`, any
/// integer (a negative one means the first), an AMQP timestamp (seconds), or an age such as
/// `"1h"` (messages stored since). `now_ms` is the broker's clock. RabbitMQ 3.10 crashes the
/// channel (541 INTERNAL_ERROR) on any other type or string; this broker refuses it cleanly
/// with 406 (docs/differences.md).
pub fn stream_offset(arguments: &FieldTable, now_ms: u64, queue: &str, vhost: &str) -> Result<StreamOffset, AmqpError> {
    let Some(value) = arguments.inner().get("x-stream-offset") else {
        return Ok(StreamOffset::Next);
    };
    let refused = |reason: String| {
        let text = format!("invalid arg 'x-stream-offset' for queue '{queue}' in vhost '{vhost}': {reason}");
        AmqpError::new(PRECONDITION_FAILED, text)
    };
    if let Some(number) = integer(value) {
        return Ok(StreamOffset::Offset(u64::try_from(number).unwrap_or(0)));
    }
    match value {
        AMQPValue::Timestamp(seconds) => Ok(StreamOffset::TimestampMs(seconds.saturating_mul(SECOND_MS))),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            let text = super::queue_args::text(value).unwrap_or_default();
            match text.as_str() {
                "first" => Ok(StreamOffset::First),
                "last" => Ok(StreamOffset::Last),
                "next" => Ok(StreamOffset::Next),
                age => match age_ms(age) {
                    Some(age_ms) => Ok(StreamOffset::TimestampMs(now_ms.saturating_sub(age_ms))),
                    None => Err(refused(format!("\"invalid offset '{age}'\""))),
                },
            }
        }
        other => Err(refused(format!("{{unacceptable_type,{}}}", type_name(other)))),
    }
}

/// RabbitMQ 3.10's rules for a consumer of a stream, in its order, after the consumer
/// arguments were checked: a prefetch of the consumer's own (406), manual acks (540), no
/// global prefetch on the channel (540).
pub fn check_consumer(consumer: StreamConsumer, queue: &str, vhost: &str) -> Result<(), AmqpError> {
    if consumer.own_prefetch == 0 {
        let text = format!("consumer prefetch count is not set for 'queue '{queue}' in vhost '{vhost}''");
        return Err(AmqpError::new(PRECONDITION_FAILED, text));
    }
    if consumer.no_ack {
        let text =
            format!("automatic acknowledgement not supported by stream queues queue '{queue}' in vhost '{vhost}'");
        return Err(AmqpError::new(NOT_IMPLEMENTED, text));
    }
    if consumer.global_prefetch > 0 {
        let text = format!("queue '{queue}' in vhost '{vhost}' does not support global qos");
        return Err(AmqpError::new(NOT_IMPLEMENTED, text));
    }
    Ok(())
}

/// What `check_consumer` looks at: the consumer's basic.consume and its channel's basic.qos.
#[derive(Clone, Copy, Debug)]
pub struct StreamConsumer {
    pub own_prefetch: u32,
    pub global_prefetch: u32,
    pub no_ack: bool,
}

/// An operation a stream refuses (540, a connection error, as RabbitMQ 3.10): `basic.get`,
/// `queue.purge`, `basic.nack and basic.reject`.
pub fn not_supported(operation: &str, queue: &str, vhost: &str) -> AmqpError {
    let text = format!("{operation} not supported by stream queues queue '{queue}' in vhost '{vhost}'");
    AmqpError::new(NOT_IMPLEMENTED, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    fn long_string(text: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(text))
    }

    fn offset_of(value: AMQPValue) -> Result<StreamOffset, String> {
        let mut arguments = FieldTable::default();
        arguments.insert("x-stream-offset".into(), value);
        stream_offset(&arguments, 10_000_000, "q", "/").map_err(|error| error.reply_text)
    }

    #[test]
    fn ages_take_rabbitmq_units() {
        assert_eq!(age_ms("7D"), Some(7 * DAY_MS));
        assert_eq!(age_ms("12h"), Some(12 * 3_600_000));
        assert_eq!(age_ms("30m"), Some(1_800_000));
        assert_eq!(age_ms("10s"), Some(10_000));
        assert_eq!(age_ms("1Y"), Some(365 * DAY_MS));
        assert_eq!(age_ms("2M"), Some(60 * DAY_MS));
        for refused in ["0D", "100", "7W", "bogus", "D", "-1D", "7d", "1h2"] {
            assert_eq!(age_ms(refused), None, "{refused}");
        }
        assert_eq!(age_ms("99999999999999999999999Y"), Some(u64::MAX));
    }

    #[test]
    fn max_age_refusals_have_rabbitmq_reasons() {
        let table = FieldTable::default();
        assert_eq!(check_max_age(&long_string("7W"), &table), Err("invalid_max_age".into()));
        assert_eq!(check_max_age(&AMQPValue::LongInt(100), &table), Err("{unacceptable_type,signedint}".into()));
        assert_eq!(check_max_age(&long_string("7D"), &table), Ok(()));
    }

    #[test]
    fn stream_offsets_are_read_as_rabbitmq_reads_them() {
        assert_eq!(stream_offset(&FieldTable::default(), 0, "q", "/"), Ok(StreamOffset::Next));
        assert_eq!(offset_of(long_string("first")), Ok(StreamOffset::First));
        assert_eq!(offset_of(long_string("last")), Ok(StreamOffset::Last));
        assert_eq!(offset_of(long_string("next")), Ok(StreamOffset::Next));
        assert_eq!(offset_of(AMQPValue::ShortInt(5)), Ok(StreamOffset::Offset(5)));
        assert_eq!(offset_of(AMQPValue::LongLongInt(-3)), Ok(StreamOffset::Offset(0)));
        assert_eq!(offset_of(AMQPValue::Timestamp(2)), Ok(StreamOffset::TimestampMs(2_000)));
        assert_eq!(offset_of(long_string("1h")), Ok(StreamOffset::TimestampMs(10_000_000 - 3_600_000)));
        let bogus = offset_of(long_string("bogus")).expect_err("refused");
        assert_eq!(bogus, "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 'q' in vhost '/': \"invalid offset 'bogus'\"");
        let boolean = offset_of(AMQPValue::Boolean(true)).expect_err("refused");
        assert!(boolean.ends_with(": {unacceptable_type,bool}"), "{boolean}");
    }

    #[test]
    fn consumer_rules_come_in_rabbitmq_order() {
        let rule = |own_prefetch, global_prefetch, no_ack| {
            check_consumer(StreamConsumer { own_prefetch, global_prefetch, no_ack }, "q", "/")
                .map_err(|error| (error.reply_code, error.reply_text))
        };
        assert_eq!(rule(10, 0, false), Ok(()));
        let unset = "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 'q' in vhost '/''";
        assert_eq!(rule(0, 10, true), Err((PRECONDITION_FAILED, unset.into())));
        assert_eq!(rule(10, 10, true).map_err(|error| error.0), Err(NOT_IMPLEMENTED));
        let global = "NOT_IMPLEMENTED - queue 'q' in vhost '/' does not support global qos";
        assert_eq!(rule(10, 10, false), Err((NOT_IMPLEMENTED, global.into())));
    }
}
