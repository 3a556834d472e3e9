//! `--queue-args` and `--consumer-args`: a JSON object on the command line turned into an AMQP
//! field table, the way PerfTest and lavinmqperf accept queue and consumer arguments.
//!
//! Owns only the value mapping. Integers become signed 64-bit (`l`), which RabbitMQ and
//! SpateMQ accept for every numeric `x-` argument; fractions become doubles, strings long
//! strings, `null` void, and arrays/objects nest.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable};
use serde_json::Value;

/// Parses `text` as a JSON object; the error message says what was wrong.
pub fn from_json(text: &str) -> Result<FieldTable, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(entries)) => Ok(table(&entries)),
        Ok(_) => Err("expected a JSON object such as {\"x-max-length\": 1000}".to_string()),
        Err(error) => Err(format!("not valid JSON: {error}")),
    }
}

fn table(entries: &serde_json::Map<String, Value>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(key.as_str().into(), amqp_value(value));
    }
    table
}

fn amqp_value(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(flag) => AMQPValue::Boolean(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => AMQPValue::LongLongInt(integer),
            None => AMQPValue::Double(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => AMQPValue::LongString(text.as_str().into()),
        Value::Array(values) => {
            AMQPValue::FieldArray(FieldArray::from(values.iter().map(amqp_value).collect::<Vec<_>>()))
        }
        Value::Object(entries) => AMQPValue::FieldTable(table(entries)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_map_to_amqp_types() {
        let parsed = from_json(
            r#"{"x-max-length": 1000, "x-queue-type": "classic", "lazy": true,
                "ratio": 0.5, "none": null, "list": [1, "a"], "nested": {"k": -2}}"#,
        )
        .expect("valid");
        let mut expected = FieldTable::default();
        expected.insert("x-max-length".into(), AMQPValue::LongLongInt(1000));
        expected.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
        expected.insert("lazy".into(), AMQPValue::Boolean(true));
        expected.insert("ratio".into(), AMQPValue::Double(0.5));
        expected.insert("none".into(), AMQPValue::Void);
        expected.insert(
            "list".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongLongInt(1), AMQPValue::LongString("a".into())])),
        );
        let mut nested = FieldTable::default();
        nested.insert("k".into(), AMQPValue::LongLongInt(-2));
        expected.insert("nested".into(), AMQPValue::FieldTable(nested));
        assert_eq!(parsed, expected);
    }

    #[test]
    fn non_objects_and_bad_json_are_refused() {
        assert!(from_json("[1]").expect_err("array").contains("JSON object"));
        assert!(from_json("{x:1}").expect_err("bad").contains("not valid JSON"));
        assert_eq!(from_json("{}"), Ok(FieldTable::default()));
    }
}
