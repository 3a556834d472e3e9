//! What a redeclare must repeat: the rules RabbitMQ 3.10 applies when exchange.declare or
//! queue.declare names something that exists (`rabbit_exchange:assert_equivalence`,
//! `rabbit_amqqueue:assert_equivalence`, `rabbit_misc:assert_args_equivalence`).
//!
//! Flags are compared one by one, in RabbitMQ's order; of the arguments only those that change
//! behaviour are compared (`alternate-exchange` for an exchange, those of the existing queue's
//! type for a queue: `QueueType::equivalence_keys`), as Erlang terms: an integer is equivalent
//! to the same integer of another width.
//! Arguments are compared as stored, so definitions written by any earlier version compare the
//! same way. Pure functions; the definitions writer calls them.

use amq_protocol::types::{AMQPValue, FieldTable};

use super::error::{AmqpError, PRECONDITION_FAILED};
use super::headers_match::type_name;
use super::queue_args::{integer, QueueType};
use super::requests::{ExchangeDeclare, QueueDeclare};
use super::routing::ExchangeKind;
use super::snapshot::{Exchange, QueueDef};

/// The only exchange argument RabbitMQ compares.
const EXCHANGE_EQUIVALENCE_KEYS: &[&str] = &["alternate-exchange"];

/// What is redeclared, for the error text: "exchange 'x' in vhost '/'".
struct Resource<'a> {
    kind: &'a str,
    name: &'a str,
    vhost: &'a str,
}

impl Resource<'_> {
    /// RabbitMQ's `equivalence_fail`; `received` and `current` are already rendered.
    fn inequivalent(&self, arg: &str, received: &str, current: &str) -> AmqpError {
        let Resource { kind, name, vhost } = self;
        let text = format!(
            "inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': received {received} but current is {current}"
        );
        AmqpError::new(PRECONDITION_FAILED, text)
    }

    fn check_flag(&self, arg: &str, current: bool, received: bool) -> Result<(), AmqpError> {
        if current == received {
            return Ok(());
        }
        Err(self.inequivalent(arg, &format!("'{received}'"), &format!("'{current}'")))
    }

    /// `rabbit_misc:assert_args_equivalence` over `keys`, in their order.
    fn check_arguments(&self, current: &FieldTable, received: &FieldTable, keys: &[&str]) -> Result<(), AmqpError> {
        for key in keys {
            let (current, received) = (current.inner().get(*key), received.inner().get(*key));
            match (current, received) {
                (Some(current), Some(received)) if term(current) == term(received) => {}
                (Some(current), Some(received)) => {
                    return Err(self.inequivalent(key, &value_text(received), &value_text(current)));
                }
                (None, None) => {}
                (None, Some(value)) | (Some(value), None) if *key == "x-queue-type" && is_classic(value) => {}
                (current, received) => {
                    return Err(self.inequivalent(key, &typed_value_text(received), &typed_value_text(current)));
                }
            }
        }
        Ok(())
    }
}

/// exchange.declare of an existing exchange: type, durable, auto_delete, internal, then
/// `alternate-exchange`.
pub fn check_exchange_equivalence(
    exchange: &Exchange,
    kind: ExchangeKind,
    request: &ExchangeDeclare,
) -> Result<(), AmqpError> {
    let resource = Resource { kind: "exchange", name: &exchange.name, vhost: &request.vhost };
    if exchange.kind != kind {
        let (received, current) = (format!("'{}'", kind.erlang_atom()), format!("'{}'", exchange.kind.erlang_atom()));
        return Err(resource.inequivalent("type", &received, &current));
    }
    resource.check_flag("durable", exchange.durable, request.durable)?;
    resource.check_flag("auto_delete", exchange.auto_delete, request.auto_delete)?;
    resource.check_flag("internal", exchange.internal, request.internal)?;
    resource.check_arguments(&exchange.arguments, &request.arguments, EXCHANGE_EQUIVALENCE_KEYS)
}

/// queue.declare of an existing queue, after its exclusivity was checked: durable (as the
/// request makes it: an exclusive queue is never durable), auto_delete, then the arguments.
pub fn check_queue_equivalence(queue: &QueueDef, request: &QueueDeclare, durable: bool) -> Result<(), AmqpError> {
    let resource = Resource { kind: "queue", name: &queue.name, vhost: &queue.vhost };
    resource.check_flag("durable", queue.durable, durable)?;
    resource.check_flag("auto_delete", queue.auto_delete, request.auto_delete)?;
    let keys = QueueType::of(&queue.arguments).equivalence_keys();
    resource.check_arguments(&queue.arguments, &request.arguments, keys)
}

fn is_classic(value: &AMQPValue) -> bool {
    matches!(term(value), Term::Binary(bytes) if bytes == b"classic")
}

/// A field value as the Erlang term RabbitMQ compares and prints (the type tag aside).
#[derive(Debug, PartialEq)]
enum Term<'a> {
    Integer(i64),
    Float(f64),
    Binary(&'a [u8]),
    Boolean(bool),
    /// Decimals, tables, arrays and void: compared with their type, printed as debug text.
    Other(&'a AMQPValue),
}

fn term(value: &AMQPValue) -> Term<'_> {
    if let Some(number) = integer(value) {
        return Term::Integer(number);
    }
    match value {
        AMQPValue::Timestamp(stamp) => i64::try_from(*stamp).map_or(Term::Other(value), Term::Integer),
        AMQPValue::Float(number) => Term::Float(f64::from(*number)),
        AMQPValue::Double(number) => Term::Float(*number),
        AMQPValue::LongString(text) => Term::Binary(text.as_bytes()),
        AMQPValue::ShortString(text) => Term::Binary(text.as_str().as_bytes()),
        AMQPValue::ByteArray(bytes) => Term::Binary(bytes.as_slice()),
        AMQPValue::Boolean(flag) => Term::Boolean(*flag),
        other => Term::Other(other),
    }
}

/// `rabbit_misc:val/1` of a bare value: `'1000'`.
fn value_text(value: &AMQPValue) -> String {
    format!("'{}'", term_text(value))
}

/// `rabbit_misc:val/1` of a typed value: `the value '1000' of type 'signedint'`, or `none`.
fn typed_value_text(value: Option<&AMQPValue>) -> String {
    match value {
        None => "none".to_string(),
        Some(value) => format!("the value '{}' of type '{}'", term_text(value), type_name(value)),
    }
}

fn term_text(value: &AMQPValue) -> String {
    match term(value) {
        Term::Integer(number) => number.to_string(),
        Term::Float(number) => format!("{number:?}"),
        Term::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Term::Boolean(flag) => flag.to_string(),
        Term::Other(other) => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (name, value) in entries {
            table.insert((*name).into(), value.clone());
        }
        table
    }

    fn compare(current: &[(&str, AMQPValue)], received: &[(&str, AMQPValue)]) -> Result<(), String> {
        let resource = Resource { kind: "queue", name: "q", vhost: "/" };
        resource
            .check_arguments(&table(current), &table(received), QueueType::Classic.equivalence_keys())
            .map_err(|error| error.reply_text)
    }

    #[test]
    fn integers_of_any_width_are_equivalent() {
        let widths = [
            AMQPValue::ShortShortUInt(100),
            AMQPValue::ShortInt(100),
            AMQPValue::LongInt(100),
            AMQPValue::LongUInt(100),
            AMQPValue::LongLongInt(100),
        ];
        for current in &widths {
            for received in &widths {
                assert_eq!(
                    compare(&[("x-max-length", current.clone())], &[("x-max-length", received.clone())]),
                    Ok(())
                );
            }
        }
    }

    #[test]
    fn a_difference_is_described_as_rabbitmq_describes_it() {
        let classic = AMQPValue::LongString(LongString::from("classic"));
        assert_eq!(compare(&[], &[("x-queue-type", classic.clone())]), Ok(()));
        assert_eq!(compare(&[("x-queue-type", classic)], &[]), Ok(()));
        assert_eq!(compare(&[("x-custom", AMQPValue::Boolean(true))], &[]), Ok(()));
        let text = compare(&[("x-max-length", AMQPValue::LongInt(1))], &[("x-max-length", AMQPValue::LongInt(2))]);
        assert!(text.expect_err("differs").ends_with("received '2' but current is '1'"));
        let text = compare(&[], &[("x-overflow", AMQPValue::LongString(LongString::from("reject-publish")))]);
        assert!(text
            .expect_err("differs")
            .ends_with("received the value 'reject-publish' of type 'longstr' but current is none"));
    }
}
