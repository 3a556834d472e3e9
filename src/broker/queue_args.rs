//! The queue arguments RabbitMQ clients rely on (`x-message-ttl`, `x-expires`, `x-max-length`,
//! `x-max-length-bytes`, `x-overflow`, `x-dead-letter-exchange`, `x-dead-letter-routing-key`,
//! `x-max-priority`, `x-single-active-consumer`, `x-queue-type`, `x-queue-mode`,
//! `x-queue-version`, and this broker's `x-delivery-limit` and `x-consumer-timeout`) and those of
//! quorum queues (`x-delivery-limit`, `x-dead-letter-strategy`, `x-quorum-initial-group-size`,
//! `x-max-in-memory-length`, `x-max-in-memory-bytes`, `x-queue-leader-locator`) and streams
//! (`stream_args`: `x-max-age`, `x-stream-max-segment-size-bytes`, `x-initial-cluster-size`), checked
//! when a queue is created and turned into the typed settings a queue acts on; the consumer
//! argument `x-consumer-timeout`, checked at basic.consume; and the exchange argument
//! `alternate-exchange`, checked when an exchange is created.
//!
//! `validate` refuses a bad argument with RabbitMQ 3.10's reply code, text and order of checks
//! ("invalid arg '<name>' for queue '<q>' in vhost '<v>': <reason>"). `QueueType::equivalence_keys`
//! are the arguments a redeclare must repeat. `QueueArgs::from_table` reads arguments that were
//! validated when declared (or recovered from the definitions log, whatever version wrote it)
//! and never fails. Nothing here does I/O.

use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable};

use super::error::{AmqpError, PRECONDITION_FAILED};
use super::headers_match::type_name;

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
    /// `x-queue-mode: lazy`: transient messages are paged out from the first one.
    pub lazy: bool,
    /// `x-queue-type`: a quorum queue counts every message's returns and shows them in
    /// `x-delivery-count` whatever its delivery limit.
    pub queue_type: QueueType,
}

/// The queue types this broker declares (`x-queue-type`; absent means classic).
///
/// A quorum queue on one node is a durable queue with RabbitMQ 3.10's quorum rules: declared
/// durable, never exclusive nor auto-delete; its own set of arguments; every message kept on
/// disk; `x-delivery-count` on redeliveries; no global basic.qos. It has no replicas: the
/// replicated meaning comes with clustering. A stream (`super::stream_args`) has the same
/// declare rules and its own arguments and consumer rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
    Stream,
}

impl QueueType {
    /// The type named by `x-queue-type` of validated (or recovered) arguments.
    pub fn of(arguments: &FieldTable) -> QueueType {
        match arguments.inner().get("x-queue-type").and_then(text).as_deref() {
            Some("quorum") => QueueType::Quorum,
            Some("stream") => QueueType::Stream,
            _ => QueueType::Classic,
        }
    }

    /// The name the management API and the definitions export show.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }

    /// RabbitMQ's module name, which its error texts print.
    pub fn module(self) -> &'static str {
        match self {
            QueueType::Classic => "rabbit_classic_queue",
            QueueType::Quorum => "rabbit_quorum_queue",
            QueueType::Stream => "rabbit_stream_queue",
        }
    }

    /// The queue arguments this type knows (`capabilities/0`'s `queue_arguments`, in
    /// RabbitMQ's order), then this broker's extensions.
    fn arguments(self) -> &'static [&'static str] {
        match self {
            QueueType::Classic => CLASSIC_ARGUMENTS,
            QueueType::Quorum => QUORUM_ARGUMENTS,
            QueueType::Stream => super::stream_args::STREAM_ARGUMENTS,
        }
    }

    /// The arguments compared when a queue of this type is declared again.
    pub fn equivalence_keys(self) -> &'static [&'static str] {
        self.arguments()
    }
}

/// `rabbit_classic_queue:capabilities/0`'s queue arguments, then this broker's extensions,
/// which change how the queue behaves too.
const CLASSIC_ARGUMENTS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
    "x-delivery-limit",
    "x-consumer-timeout",
];

/// `rabbit_quorum_queue:capabilities/0`'s queue arguments, then this broker's extension.
const QUORUM_ARGUMENTS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
    "x-message-ttl",
    "x-queue-leader-locator",
    "x-consumer-timeout",
];

/// Every queue argument some RabbitMQ 3.10 queue type knows (classic, quorum, stream): one
/// the declared type does not know is refused ("... of queue type rabbit_quorum_queue"), as
/// `rabbit_amqqueue:check_arguments_key` does. Other arguments are accepted and ignored.
const TYPED_ARGUMENTS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-delivery-limit",
    "x-expires",
    "x-initial-cluster-size",
    "x-max-age",
    "x-max-in-memory-bytes",
    "x-max-in-memory-length",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-leader-locator",
    "x-queue-master-locator",
    "x-queue-mode",
    "x-queue-type",
    "x-queue-version",
    "x-quorum-initial-group-size",
    "x-single-active-consumer",
    "x-stream-max-segment-size-bytes",
];

/// `rabbit_queue_location:queue_leader_locators/0`.
const LEADER_LOCATORS: &[&str] = &["client-local", "balanced", "random", "least-leaders"];

/// Largest `x-message-ttl` and `x-expires` RabbitMQ 3.10 accepts: ten years in milliseconds
/// (`rabbit_misc:check_expiry`).
const EXPIRY_MAX_MS: i64 = 315_360_000_000;

/// Largest `x-max-priority` (RabbitMQ's `MAX_SUPPORTED_PRIORITY`).
const PRIORITY_MAX: i64 = 255;

/// Why an argument is refused, written as RabbitMQ prints the error term with `~p`: a tuple
/// `{value_negative,-1}`, an atom `invalid_overflow` or a quoted string.
pub(super) type Reason = String;

/// One argument check: the value, and the whole table for checks that look at another key.
pub(super) type Check = fn(&AMQPValue, &FieldTable) -> Result<(), Reason>;

/// The argument checks in the order RabbitMQ 3.10 runs them (`rabbit_amqqueue:declare_args/0`),
/// then this broker's extensions; a queue runs those its type knows. RabbitMQ checks no
/// `x-delivery-limit` of a quorum queue (any value is accepted, only an integer acts); this
/// broker's extension on classic queues checks it.
const DECLARE_CHECKS: &[(&str, Check)] = &[
    ("x-expires", check_expires),
    ("x-message-ttl", check_message_ttl),
    ("x-dead-letter-exchange", check_dead_letter_exchange),
    ("x-dead-letter-routing-key", check_dead_letter_routing_key),
    ("x-dead-letter-strategy", check_dead_letter_strategy),
    ("x-max-length", check_non_negative),
    ("x-max-length-bytes", check_non_negative),
    ("x-max-in-memory-length", check_non_negative),
    ("x-max-in-memory-bytes", check_non_negative),
    ("x-max-priority", check_max_priority),
    ("x-overflow", check_overflow),
    ("x-queue-mode", check_queue_mode),
    ("x-queue-version", check_queue_version),
    ("x-single-active-consumer", check_single_active_consumer),
    ("x-queue-type", check_queue_type),
    ("x-quorum-initial-group-size", check_initial_group_size),
    ("x-queue-leader-locator", check_leader_locator),
    ("x-max-age", super::stream_args::check_max_age),
    ("x-stream-max-segment-size-bytes", check_non_negative),
    ("x-initial-cluster-size", check_initial_group_size),
    ("x-delivery-limit", check_classic_delivery_limit),
    ("x-consumer-timeout", check_non_negative),
];

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

pub(super) fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_string()),
        _ => None,
    }
}

pub(super) fn unacceptable_type(value: &AMQPValue) -> Reason {
    format!("{{unacceptable_type,{}}}", type_name(value))
}

/// `check_int_arg`: any integer type; the reason of another type is a string.
fn check_int(value: &AMQPValue) -> Result<i64, Reason> {
    integer(value).ok_or_else(|| format!("\"expected integer, got {}\"", type_name(value)))
}

pub(super) fn check_non_negative(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    non_negative(value).map(drop)
}

fn non_negative(value: &AMQPValue) -> Result<i64, Reason> {
    match check_int(value)? {
        number if number < 0 => Err(format!("{{value_negative,{number}}}")),
        number => Ok(number),
    }
}

/// `rabbit_misc:check_expiry`.
fn check_expiry(number: i64) -> Result<(), Reason> {
    if number < 0 {
        return Err(format!("{{value_negative,{number}}}"));
    }
    if number > EXPIRY_MAX_MS {
        return Err(format!("{{value_too_large,{number}}}"));
    }
    Ok(())
}

fn check_expires(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match check_int(value)? {
        0 => Err("{value_zero,0}".into()),
        number => check_expiry(number),
    }
}

fn check_message_ttl(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    check_expiry(check_int(value)?)
}

fn check_max_priority(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match non_negative(value)? {
        number if number > PRIORITY_MAX => Err(format!("{{max_value_exceeded,{number}}}")),
        _ => Ok(()),
    }
}

fn long_string(value: &AMQPValue) -> Result<String, Reason> {
    text(value).ok_or_else(|| unacceptable_type(value))
}

fn check_dead_letter_exchange(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    long_string(value).map(drop)
}

fn check_dead_letter_routing_key(value: &AMQPValue, arguments: &FieldTable) -> Result<(), Reason> {
    long_string(value)?;
    if arguments.inner().contains_key("x-dead-letter-exchange") {
        Ok(())
    } else {
        Err("routing_key_but_no_dlx_defined".into())
    }
}

fn check_overflow(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match long_string(value)?.as_str() {
        "drop-head" | "reject-publish" | "reject-publish-dlx" => Ok(()),
        _ => Err("invalid_overflow".into()),
    }
}

/// Lazy mode is accepted and has no effect: this broker decides itself what stays in memory.
fn check_queue_mode(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match long_string(value)?.as_str() {
        "default" | "lazy" => Ok(()),
        other => Err(format!("\"unsupported queue mode '{other}'\"")),
    }
}

/// Both versions are accepted and behave the same here (the version is RabbitMQ's index format).
fn check_queue_version(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match non_negative(value)? {
        1 | 2 => Ok(()),
        other => Err(format!("\"unsupported queue version '{other}'\"")),
    }
}

fn check_single_active_consumer(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match value {
        AMQPValue::Boolean(_) => Ok(()),
        other => Err(unacceptable_type(other)),
    }
}

/// `x-delivery-limit` is this broker's extension on a classic queue (an integer ≥ 0); a quorum
/// queue takes any value, as RabbitMQ 3.10 does.
fn check_classic_delivery_limit(value: &AMQPValue, arguments: &FieldTable) -> Result<(), Reason> {
    match QueueType::of(arguments) {
        QueueType::Classic => non_negative(value).map(drop),
        QueueType::Quorum | QueueType::Stream => Ok(()),
    }
}

fn check_dead_letter_strategy(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match long_string(value)?.as_str() {
        "at-most-once" | "at-least-once" => Ok(()),
        _ => Err("invalid_dlx_strategy".into()),
    }
}

/// `check_initial_cluster_size_arg`: an integer > 0.
pub(super) fn check_initial_group_size(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match non_negative(value)? {
        0 => Err("{value_zero,0}".into()),
        _ => Ok(()),
    }
}

fn check_leader_locator(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    if LEADER_LOCATORS.contains(&long_string(value)?.as_str()) {
        Ok(())
    } else {
        Err("invalid_queue_locator_arg".into())
    }
}

fn check_queue_type(value: &AMQPValue, _: &FieldTable) -> Result<(), Reason> {
    match long_string(value)?.as_str() {
        "classic" | "quorum" | "stream" => Ok(()),
        other => Err(format!("\"unsupported queue type '{other}'\"")),
    }
}

/// Checks the arguments of a queue about to be created, in RabbitMQ 3.10's order: the type of
/// `x-dead-letter-exchange` (checked by the channel, with its own text), `x-queue-type`, then
/// each argument the queue type knows, then arguments another type knows and this one does
/// not. A queue that exists is not checked, only compared.
pub fn validate(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<(), AmqpError> {
    let table = arguments.inner();
    if let Some(value) = table.get("x-dead-letter-exchange").filter(|value| text(value).is_none()) {
        let text = format!(
            "invalid type '{}' for arg 'x-dead-letter-exchange' in queue '{queue}' in vhost '{vhost}'",
            type_name(value)
        );
        return Err(AmqpError::new(PRECONDITION_FAILED, text));
    }
    let type_check = DECLARE_CHECKS.iter().filter(|(name, _)| *name == "x-queue-type");
    let queue_type = QueueType::of(arguments);
    let known = DECLARE_CHECKS.iter().filter(|(name, _)| queue_type.arguments().contains(name));
    for (name, check) in type_check.chain(known) {
        let Some(value) = table.get(*name) else { continue };
        if let Err(reason) = check(value, arguments) {
            let text = format!("invalid arg '{name}' for queue '{queue}' in vhost '{vhost}': {reason}");
            return Err(AmqpError::new(PRECONDITION_FAILED, text));
        }
    }
    let foreign = table
        .keys()
        .map(|name| name.as_str())
        .find(|name| TYPED_ARGUMENTS.contains(name) && !queue_type.arguments().contains(name));
    if let Some(name) = foreign {
        let text = format!(
            "invalid arg '{name}' for queue '{queue}' in vhost '{vhost}' of queue type {}",
            queue_type.module()
        );
        return Err(AmqpError::new(PRECONDITION_FAILED, text));
    }
    super::dedup::validate(arguments, "queue", queue, vhost)
}

/// The declare flags a queue type refuses, checked after the arguments, in RabbitMQ 3.10's
/// order (`rabbit_quorum_queue:declare/2`): auto-delete, exclusive, then not durable.
pub fn check_flags(arguments: &FieldTable, flags: QueueFlags, queue: &str, vhost: &str) -> Result<(), AmqpError> {
    if QueueType::of(arguments) == QueueType::Classic {
        return Ok(());
    }
    let property = if flags.auto_delete {
        "auto-delete"
    } else if flags.exclusive {
        "exclusive-owner"
    } else if !flags.durable {
        "non-durable"
    } else {
        return Ok(());
    };
    let text = format!("invalid property '{property}' for queue '{queue}' in vhost '{vhost}'");
    Err(AmqpError::new(PRECONDITION_FAILED, text))
}

/// The flags of a queue.declare, as the queue would get them (an exclusive queue is never
/// durable).
#[derive(Clone, Copy, Debug)]
pub struct QueueFlags {
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
}

/// A server-named queue of a type that cannot have one: RabbitMQ refuses it before anything
/// else ("Cannot declare a server-named queue for type rabbit_quorum_queue").
pub fn check_server_named(arguments: &FieldTable) -> Result<(), AmqpError> {
    match QueueType::of(arguments) {
        QueueType::Classic => Ok(()),
        other => {
            let text = format!("Cannot declare a server-named queue for type {}", other.module());
            Err(AmqpError::new(PRECONDITION_FAILED, text))
        }
    }
}

/// Checks the exchange arguments RabbitMQ checks when it creates an exchange:
/// `alternate-exchange` must be a long string. An exchange that exists is only compared.
pub fn validate_exchange(arguments: &FieldTable, exchange: &str, vhost: &str) -> Result<(), AmqpError> {
    match arguments.inner().get("alternate-exchange") {
        Some(value) if text(value).is_none() => {
            let text = format!(
                "invalid type '{}' for arg 'alternate-exchange' in exchange '{exchange}' in vhost '{vhost}'",
                type_name(value)
            );
            Err(AmqpError::new(PRECONDITION_FAILED, text))
        }
        _ => super::dedup::validate(arguments, "exchange", exchange, vhost),
    }
}

/// The consumer argument `x-consumer-timeout` of basic.consume (ms, an integer ≥ 0, as RabbitMQ
/// 4.3 checks it), refused with the queue-argument text shape; None without one.
pub fn consumer_timeout_argument(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<Option<u64>, AmqpError> {
    let Some(value) = arguments.inner().get("x-consumer-timeout") else {
        return Ok(None);
    };
    let checked = match integer(value) {
        None => Err(unacceptable_type(value)),
        Some(number) if number < 0 => Err(format!("{{value_negative,{number}}}")),
        Some(number) => Ok(number),
    };
    match checked {
        Ok(timeout_ms) => Ok(u64::try_from(timeout_ms).ok()),
        Err(reason) => {
            let text = format!("invalid arg 'x-consumer-timeout' for queue '{queue}' in vhost '{vhost}': {reason}");
            Err(AmqpError::new(PRECONDITION_FAILED, text))
        }
    }
}

/// The prefetch a quorum queue gives a consumer that set none (`rabbit_quorum_queue:consume`).
pub const QUORUM_DEFAULT_PREFETCH: u32 = 2000;

/// Consumer arguments some RabbitMQ 3.10 queue type knows (`consumer_arguments`); one the
/// queue's type does not know is refused, as `rabbit_amqqueue:check_consume_arguments` does.
const TYPED_CONSUMER_ARGUMENTS: &[&str] = &["x-cancel-on-ha-failover", "x-credit", "x-priority", "x-stream-offset"];

/// basic.consume's arguments another queue type knows and this one does not: classic queues
/// refuse `x-stream-offset`, quorum queues also `x-cancel-on-ha-failover`, streams
/// `x-priority` and `x-cancel-on-ha-failover`.
pub fn check_consumer_arguments_of_type(
    queue_type: QueueType,
    arguments: &FieldTable,
    queue: &str,
    vhost: &str,
) -> Result<(), AmqpError> {
    let known: &[&str] = match queue_type {
        QueueType::Classic => &["x-cancel-on-ha-failover", "x-priority", "x-credit"],
        QueueType::Quorum => &["x-priority", "x-credit"],
        QueueType::Stream => &["x-stream-offset", "x-credit"],
    };
    let foreign = arguments
        .inner()
        .keys()
        .map(|name| name.as_str())
        .find(|name| TYPED_CONSUMER_ARGUMENTS.contains(name) && !known.contains(name));
    match foreign {
        None => Ok(()),
        Some(name) => {
            let text = format!(
                "invalid arg '{name}' for queue '{queue}' in vhost '{vhost}' of queue type {}",
                queue_type.module()
            );
            Err(AmqpError::new(PRECONDITION_FAILED, text))
        }
    }
}

/// The queue argument `x-consumer-timeout` (ms) of a declared queue, read without building the
/// rest of `QueueArgs` (the connection's shard reads it at basic.consume and basic.get).
pub fn queue_consumer_timeout(arguments: &FieldTable) -> Option<u64> {
    arguments.inner().get("x-consumer-timeout").and_then(integer).and_then(|number| u64::try_from(number).ok())
}

/// The delivery limit a queue acts on. A quorum queue takes whatever RabbitMQ 3.10 takes:
/// a negative integer drops a message at its first return (as 0 does: `count > -1`), a value
/// of another type sets no limit.
fn delivery_limit(value: Option<&AMQPValue>, queue_type: QueueType) -> Option<u64> {
    let number = value.and_then(integer)?;
    match queue_type {
        QueueType::Quorum => Some(u64::try_from(number).unwrap_or(0)),
        QueueType::Classic => u64::try_from(number).ok(),
        QueueType::Stream => None,
    }
}

impl QueueArgs {
    /// Reads validated arguments; anything unexpected is ignored.
    pub fn from_table(arguments: &FieldTable) -> QueueArgs {
        let table = arguments.inner();
        let non_negative = |name: &str| table.get(name).and_then(integer).and_then(|number| u64::try_from(number).ok());
        let queue_type = QueueType::of(arguments);
        // A quorum queue takes reject-publish-dlx as drop-head: RabbitMQ 3.10 accepts it,
        // logs a warning and falls back to its default.
        let overflow = match (table.get("x-overflow").and_then(text).as_deref(), queue_type) {
            (Some("reject-publish"), _) => Overflow::RejectPublish,
            (Some("reject-publish-dlx"), QueueType::Classic) => Overflow::RejectPublishDlx,
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
            delivery_limit: delivery_limit(table.get("x-delivery-limit"), queue_type),
            queue_type,
            lazy: table.get("x-queue-mode").and_then(text).as_deref() == Some("lazy"),
        }
    }

    /// The `x-delivery-count` header a delivery of a message returned `returns` times carries:
    /// a classic queue with a delivery limit and a quorum queue give it from the first return
    /// on; a quorum queue's basic.get gives it always, 0 included (`rabbit_fifo_client`).
    pub fn delivery_count_header(&self, returns: u32, for_get: bool) -> Option<u32> {
        match self.queue_type {
            QueueType::Quorum if for_get => Some(returns),
            QueueType::Quorum => (returns > 0).then_some(returns),
            QueueType::Classic => self.delivery_limit.and((returns > 0).then_some(returns)),
            QueueType::Stream => None,
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
        assert!(reason(&[("x-max-length", string.clone())]).ends_with(": \"expected integer, got longstr\""));
        assert!(reason(&[("x-overflow", string.clone())]).ends_with(": invalid_overflow"));
        assert!(reason(&[("x-queue-mode", string)]).ends_with(": \"unsupported queue mode 'x'\""));
        assert!(reason(&[("x-expires", AMQPValue::LongInt(0))]).ends_with(": {value_zero,0}"));
        let ten_years_and_one_ms = AMQPValue::LongLongInt(315_360_000_001);
        assert!(reason(&[("x-message-ttl", ten_years_and_one_ms)]).ends_with(": {value_too_large,315360000001}"));
        assert!(reason(&[("x-max-priority", AMQPValue::LongInt(256))]).ends_with(": {max_value_exceeded,256}"));
        assert!(reason(&[("x-queue-version", AMQPValue::ShortShortUInt(3))])
            .ends_with(": \"unsupported queue version '3'\""));
        assert!(reason(&[("x-consumer-timeout", AMQPValue::LongInt(-1))]).contains("{value_negative,-1}"));
        let other = AMQPValue::LongString(LongString::from("delayed"));
        assert!(reason(&[("x-queue-type", other)]).ends_with(": \"unsupported queue type 'delayed'\""));
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

#[cfg(test)]
mod quorum_tests {
    use super::*;
    use amq_protocol::types::LongString;

    fn quorum(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        table.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        for (name, value) in entries {
            table.insert((*name).into(), value.clone());
        }
        table
    }

    fn text_value(text: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(text))
    }

    fn refused(arguments: &FieldTable) -> String {
        validate(arguments, "q", "/").expect_err("refused").reply_text
    }

    #[test]
    fn quorum_arguments_are_accepted_and_read() {
        let arguments = quorum(&[
            ("x-delivery-limit", AMQPValue::LongInt(3)),
            ("x-dead-letter-strategy", text_value("at-least-once")),
            ("x-overflow", text_value("reject-publish")),
            ("x-quorum-initial-group-size", AMQPValue::LongInt(3)),
            ("x-max-in-memory-length", AMQPValue::LongInt(10)),
            ("x-queue-leader-locator", text_value("balanced")),
        ]);
        validate(&arguments, "q", "/").expect("valid");
        let args = QueueArgs::from_table(&arguments);
        assert_eq!((args.queue_type, args.delivery_limit), (QueueType::Quorum, Some(3)));
    }

    #[test]
    fn arguments_of_other_types_are_refused_naming_the_queue_type() {
        for name in ["x-max-priority", "x-queue-mode", "x-queue-version", "x-queue-master-locator", "x-max-age"] {
            let text = refused(&quorum(&[(name, AMQPValue::LongInt(1))]));
            assert_eq!(text, format!("PRECONDITION_FAILED - invalid arg '{name}' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"));
        }
        let classic = refused(&[("x-dead-letter-strategy", text_value("at-most-once"))].into_iter().fold(
            FieldTable::default(),
            |mut table, (name, value)| {
                table.insert(name.into(), value);
                table
            },
        ));
        assert!(classic.ends_with("of queue type rabbit_classic_queue"), "{classic}");
    }

    #[test]
    fn bad_quorum_values_are_refused_with_rabbitmq_reasons() {
        let strategy = refused(&quorum(&[("x-dead-letter-strategy", text_value("never"))]));
        assert!(strategy.ends_with(": invalid_dlx_strategy"), "{strategy}");
        let size = refused(&quorum(&[("x-quorum-initial-group-size", AMQPValue::LongInt(0))]));
        assert!(size.ends_with(": {value_zero,0}"), "{size}");
        let locator = refused(&quorum(&[("x-queue-leader-locator", text_value("nowhere"))]));
        assert!(locator.ends_with(": invalid_queue_locator_arg"), "{locator}");
        // RabbitMQ 3.10 checks no x-delivery-limit of a quorum queue.
        validate(&quorum(&[("x-delivery-limit", text_value("abc"))]), "q", "/").expect("accepted");
    }

    #[test]
    fn quorum_flags_are_refused_in_rabbitmq_order() {
        let flags = |durable, exclusive, auto_delete| QueueFlags { durable, exclusive, auto_delete };
        let refusal = |flags| check_flags(&quorum(&[]), flags, "q", "/").map_err(|error| error.reply_text);
        assert_eq!(refusal(flags(true, false, false)), Ok(()));
        assert_eq!(
            refusal(flags(false, true, true)),
            Err("PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'q' in vhost '/'".into())
        );
        assert_eq!(
            refusal(flags(false, true, false)),
            Err("PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 'q' in vhost '/'".into())
        );
        assert_eq!(
            refusal(flags(false, false, false)),
            Err("PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q' in vhost '/'".into())
        );
        assert_eq!(check_flags(&FieldTable::default(), flags(false, true, true), "q", "/"), Ok(()));
        let server_named = check_server_named(&quorum(&[])).expect_err("refused").reply_text;
        assert_eq!(
            server_named,
            "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"
        );
    }
}
