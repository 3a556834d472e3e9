//! Fields of request bodies, read as RabbitMQ's management reads them: `rabbitmqadmin` 3.x
//! sends booleans and numbers as strings (`"durable": "true"`), so both spellings are taken;
//! anything else is 400 with RabbitMQ's reason (`["not_boolean", value]`).

use amq_protocol::types::FieldTable;
use serde_json::{json, Map, Value};

use super::api::ApiError;
use crate::broker::definitions_file::json_to_field_table;

pub struct Body(pub Map<String, Value>);

impl Body {
    /// The body must be a JSON object.
    pub fn new(value: Value) -> Result<Body, ApiError> {
        match value {
            Value::Object(object) => Ok(Body(object)),
            _ => Err(ApiError::bad_request("not_json")),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(Value::String(text)) if text == "true" => Ok(true),
            Some(Value::String(text)) if text == "false" => Ok(false),
            Some(other) => Err(reason_list("not_boolean", other)),
        }
    }

    pub fn integer(&self, key: &str, default: i64) -> Result<i64, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(number)) if number.is_i64() => Ok(number.as_i64().unwrap_or(default)),
            Some(Value::String(text)) => text.trim().parse().map_err(|_| reason_list("not_integer", &json!(text))),
            Some(other) => Err(reason_list("not_integer", other)),
        }
    }

    /// A string field; numbers and booleans are taken as their text.
    pub fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
            Some(other) => Err(reason_list("not_string", other)),
        }
    }

    pub fn required_string(&self, key: &str) -> Result<String, ApiError> {
        self.string(key)?.ok_or_else(|| ApiError::bad_request(format!("Missing key: {key}")))
    }

    /// `arguments`: an object of AMQP table values (an empty string or null is none).
    pub fn arguments(&self) -> Result<FieldTable, ApiError> {
        match self.0.get("arguments") {
            None | Some(Value::Null) => Ok(FieldTable::default()),
            Some(Value::String(text)) if text.is_empty() => Ok(FieldTable::default()),
            Some(value @ Value::Object(_)) => {
                json_to_field_table(value).map_err(|problem| ApiError::bad_request(problem.to_string()))
            }
            Some(other) => Err(reason_list("not_object", other)),
        }
    }

    /// A list of strings, or one comma-separated string (user tags).
    pub fn words(&self, key: &str) -> Result<Vec<String>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(text)) => Ok(crate::broker::users::parse_tags([text.as_str()])),
            Some(Value::Array(items)) => {
                let words: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                let words = words.ok_or_else(|| reason_list("not_string_list", &self.0[key]))?;
                Ok(crate::broker::users::parse_tags(words))
            }
            Some(other) => Err(reason_list("not_string_list", other)),
        }
    }
}

/// RabbitMQ's `{"reason": ["not_boolean", value]}`, as its JSON encoder writes the tuple.
fn reason_list(kind: &str, value: &Value) -> ApiError {
    ApiError::bad_value(json!([kind, value]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Body {
        Body::new(value).expect("an object")
    }

    #[test]
    fn booleans_and_numbers_come_as_json_or_as_strings() {
        let given = body(json!({"a": "true", "b": false, "n": "42", "m": 7}));
        assert!(given.bool("a", false).expect("bool"));
        assert!(!given.bool("b", true).expect("bool"));
        assert!(given.bool("missing", true).expect("default"));
        assert_eq!(given.integer("n", 0).expect("int"), 42);
        assert_eq!(given.integer("m", 0).expect("int"), 7);
    }

    #[test]
    fn a_wrong_type_is_400_with_rabbitmqs_reason() {
        let given = body(json!({"durable": "maybe", "count": "x"}));
        let error = given.bool("durable", false).expect_err("not a boolean");
        assert_eq!((error.status, error.reason), (400, json!(["not_boolean", "maybe"])));
        assert_eq!(given.integer("count", 1).expect_err("not a number").status, 400);
        assert!(Body::new(json!([1])).is_err());
    }

    #[test]
    fn tags_come_as_a_list_or_a_comma_separated_string() {
        assert_eq!(body(json!({"tags": "administrator,management"})).words("tags").expect("tags").len(), 2);
        assert_eq!(body(json!({"tags": ["monitoring"]})).words("tags").expect("tags"), vec!["monitoring"]);
    }
}
