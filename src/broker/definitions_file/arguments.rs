//! Queue, exchange and binding `arguments` between a definitions file's JSON and AMQP field
//! tables, with RabbitMQ 3.10's types (`rabbit_misc:to_amqp_table/1` one way,
//! `rabbit_misc:amqp_table/1` the other):
//!
//! - JSON to AMQP: an object is a field table, a list a field array, a string a long string,
//!   an integer a long long (`l`, signed 64 bits), any other number a double, true and false
//!   booleans, and null void.
//! - AMQP to JSON: every integer type and timestamps are numbers; floats, doubles and decimals
//!   (value / 10^scale) are numbers too, NaN and infinities null; short and long strings and
//!   byte arrays are strings ("Not UTF-8, base64 is: …" when they are not UTF-8, as RabbitMQ
//!   writes them); tables, arrays and booleans keep their shape; void is null.
//!
//! So `"x-message-ttl": 60000` becomes a long long, which the queue-argument checks read as any
//! integer, and `60000.0` a double, which they refuse as RabbitMQ does. RabbitMQ refuses null
//! (`null_not_allowed`); it is read here as void so that a table holding a void value survives
//! an export and an import here. An integer beyond the signed 64-bit range and a key longer
//! than 255 bytes (an AMQP short string) are refused.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Number, Value};

use super::Problem;

/// Reads an `arguments` value: an object, or the empty list RabbitMQ also takes for "none".
/// A problem's path is relative to the arguments (`x-death[0].count`), empty for the whole.
pub fn json_to_field_table(value: &Value) -> Result<FieldTable, Problem> {
    match value {
        Value::Object(object) => object_to_table(object, ""),
        Value::Array(items) if items.is_empty() => Ok(FieldTable::default()),
        other => Err(Problem::new("", format!("expected an object, found {}", super::json_kind(other)))),
    }
}

/// Writes arguments as RabbitMQ's export does: a JSON object.
pub fn field_table_to_json(table: &FieldTable) -> Value {
    Value::Object(table.inner().iter().map(|(key, value)| (key.as_str().to_string(), amqp_to_json(value))).collect())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn object_to_table(object: &Map<String, Value>, path: &str) -> Result<FieldTable, Problem> {
    let mut table = FieldTable::default();
    for (key, value) in object {
        let inner = join(path, key);
        let name = ShortString::try_new(key.as_str()).map_err(|_| {
            Problem::new(
                &inner,
                format!("a key has at most 255 bytes (an AMQP short string), this one has {}", key.len()),
            )
        })?;
        table.insert(name, json_to_amqp(value, &inner)?);
    }
    Ok(table)
}

fn json_to_amqp(value: &Value, path: &str) -> Result<AMQPValue, Problem> {
    Ok(match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(flag) => AMQPValue::Boolean(*flag),
        Value::String(text) => AMQPValue::LongString(LongString::from(text.as_str())),
        Value::Number(number) => number_to_amqp(number, path)?,
        Value::Array(items) => {
            let mut array = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                array.push(json_to_amqp(item, &format!("{path}[{index}]"))?);
            }
            AMQPValue::FieldArray(FieldArray::from(array))
        }
        Value::Object(object) => AMQPValue::FieldTable(object_to_table(object, path)?),
    })
}

fn number_to_amqp(number: &Number, path: &str) -> Result<AMQPValue, Problem> {
    if let Some(integer) = number.as_i64() {
        return Ok(AMQPValue::LongLongInt(integer));
    }
    if number.is_u64() {
        let text = format!("the integer {number} does not fit a signed 64-bit long");
        return Err(Problem::new(path, text));
    }
    match number.as_f64() {
        Some(float) => Ok(AMQPValue::Double(float)),
        None => Err(Problem::new(path, format!("the number {number} is not a 64-bit float"))),
    }
}

fn float(number: f64) -> Value {
    Number::from_f64(number).map_or(Value::Null, Value::Number)
}

/// RabbitMQ's `utf8_safe/1`: the text, or its base64 with a note when it is not UTF-8.
fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => Value::String(format!("Not UTF-8, base64 is: {}", STANDARD.encode(bytes))),
    }
}

fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(flag) => Value::Bool(*flag),
        AMQPValue::ShortShortInt(number) => Value::from(*number),
        AMQPValue::ShortShortUInt(number) => Value::from(*number),
        AMQPValue::ShortInt(number) => Value::from(*number),
        AMQPValue::ShortUInt(number) => Value::from(*number),
        AMQPValue::LongInt(number) => Value::from(*number),
        AMQPValue::LongUInt(number) => Value::from(*number),
        AMQPValue::LongLongInt(number) => Value::from(*number),
        AMQPValue::Timestamp(number) => Value::from(*number),
        AMQPValue::Float(number) => float(f64::from(*number)),
        AMQPValue::Double(number) => float(*number),
        AMQPValue::DecimalValue(decimal) => float(f64::from(decimal.value) / 10f64.powi(i32::from(decimal.scale))),
        AMQPValue::ShortString(string) => Value::String(string.as_str().to_string()),
        AMQPValue::LongString(string) => text(string.as_bytes()),
        AMQPValue::ByteArray(bytes) => text(bytes.as_slice()),
        AMQPValue::FieldArray(array) => Value::Array(array.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::FieldTable(table) => field_table_to_json(table),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::queue_args::{self, QueueArgs};
    use amq_protocol::types::{ByteArray, DecimalValue};
    use serde_json::json;

    fn table(value: Value) -> FieldTable {
        json_to_field_table(&value).expect("valid arguments")
    }

    #[test]
    fn rabbitmq_queue_arguments_become_values_the_queue_checks_accept() {
        let arguments = table(json!({
            "x-message-ttl": 60000,
            "x-dead-letter-exchange": "app.dlx",
            "x-max-priority": 10,
            "x-single-active-consumer": true,
        }));
        let inner = arguments.inner();
        assert_eq!(inner.get("x-message-ttl"), Some(&AMQPValue::LongLongInt(60000)));
        assert_eq!(inner.get("x-dead-letter-exchange"), Some(&AMQPValue::LongString("app.dlx".into())));
        queue_args::validate(&arguments, "q", "/").expect("RabbitMQ's export declares");
        let settings = QueueArgs::from_table(&arguments);
        assert_eq!(settings.message_ttl_ms, Some(60000));
        assert_eq!(settings.max_priority, Some(10));
        assert!(settings.single_active_consumer);
        assert_eq!(settings.dead_letter.expect("dead-letter target").exchange, "app.dlx");
        // A float is a double, refused for a TTL as RabbitMQ refuses it.
        let float_ttl = table(json!({"x-message-ttl": 60000.0}));
        assert_eq!(float_ttl.inner().get("x-message-ttl"), Some(&AMQPValue::Double(60000.0)));
        assert!(queue_args::validate(&float_ttl, "q", "/").is_err());
    }

    #[test]
    fn nested_values_keep_their_shape_both_ways() {
        let original = json!({
            "list": [1, "two", [false], {"deep": -3}],
            "object": {"pi": 3.5, "none": null, "big": 9_007_199_254_740_993_i64},
            "empty": {},
        });
        let converted = table(original.clone());
        let AMQPValue::FieldArray(list) = &converted.inner()["list"] else { panic!("list is an array") };
        assert_eq!(list.as_slice()[0], AMQPValue::LongLongInt(1));
        assert!(matches!(list.as_slice()[3], AMQPValue::FieldTable(_)));
        assert_eq!(field_table_to_json(&converted), original);
        assert_eq!(json_to_field_table(&json!([])).expect("empty list"), FieldTable::default());
    }

    #[test]
    fn bad_arguments_name_the_key() {
        let too_big = json_to_field_table(&json!({"a": {"b": [0, 18_446_744_073_709_551_615_u64]}})).expect_err("u64");
        assert_eq!(too_big.to_string(), "a.b[1]: the integer 18446744073709551615 does not fit a signed 64-bit long");
        let long_key = "k".repeat(256);
        let error = json_to_field_table(&json!({ long_key: 1 })).expect_err("long key");
        assert!(error.message.contains("at most 255 bytes"), "{error}");
        let not_object = json_to_field_table(&json!("x-message-ttl")).expect_err("string");
        assert_eq!(not_object.to_string(), "expected an object, found a string");
        assert!(json_to_field_table(&json!([1])).is_err());
    }

    #[test]
    fn every_amqp_type_has_rabbitmq_json() {
        let mut source = FieldTable::default();
        let entries = [
            ("byte", AMQPValue::ShortShortInt(-3)),
            ("ulong", AMQPValue::LongUInt(4_000_000_000)),
            ("time", AMQPValue::Timestamp(1_700_000_000)),
            ("float", AMQPValue::Float(1.5)),
            ("nan", AMQPValue::Double(f64::NAN)),
            ("decimal", AMQPValue::DecimalValue(DecimalValue { scale: 2, value: 12345 })),
            ("short", AMQPValue::ShortString("s".into())),
            ("bytes", AMQPValue::ByteArray(ByteArray::from(vec![0xff, 0x00]))),
            ("void", AMQPValue::Void),
        ];
        for (key, value) in entries {
            source.insert(key.into(), value);
        }
        let expected = json!({
            "byte": -3, "ulong": 4_000_000_000_u64, "time": 1_700_000_000, "float": 1.5, "nan": null,
            "decimal": 123.45, "short": "s", "bytes": "Not UTF-8, base64 is: /wA=", "void": null,
        });
        assert_eq!(field_table_to_json(&source), expected);
    }
}
