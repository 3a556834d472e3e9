//! Messages over HTTP: `POST /api/exchanges/{vhost}/{name}/publish` and
//! `POST /api/queues/{vhost}/{name}/get`, with RabbitMQ's JSON for properties and payloads
//! (`payload_encoding` `string` or `base64`; a get's `encoding` `auto` gives a string when
//! the body is UTF-8, else base64).

use std::sync::Arc;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{FieldTable, ShortString};
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::api::{json_response, ApiError, ApiResult, Call};
use super::input::Body;
use crate::broker::control::PublishRequest;
use crate::broker::definitions_file::{field_table_to_json, json_to_field_table};
use crate::broker::requests::{QueueRequest, ReplyBody};
use crate::broker::users::{check_access, Access, ResourceKind};
use crate::codec::hotpath;
use crate::codec::message::Message;
use crate::limits::MESSAGE_BODY_MAX_BYTES;

/// At most this many messages per get request.
const GET_COUNT_MAX: i64 = 1000;

/// `exchange` is "" for the default exchange (`amq.default` in the path).
pub fn publish(call: &Call, vhost: &str, exchange: &str) -> ApiResult {
    call.caller.require_vhost(vhost)?;
    let vhost_state = call.caller.snapshot.vhost(vhost).ok_or_else(ApiError::not_found)?;
    if !vhost_state.exchanges.contains_key(exchange) {
        return Err(ApiError::not_found());
    }
    let permissions = call.caller.user.permissions.get(vhost).map(|found| &**found);
    check_access(permissions, Access::Write, ResourceKind::Exchange, exchange, vhost, call.caller.name())
        .map_err(ApiError::from_amqp)?;
    let body = Body::new(call.json_body()?)?;
    let routing_key = body.required_string("routing_key")?;
    let payload = body.required_string("payload")?;
    let payload = match body.string("payload_encoding")?.as_deref().unwrap_or("string") {
        "string" => payload.into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|error| ApiError::bad_request(format!("payload is not base64: {error}")))?,
        other => return Err(ApiError::bad_value(json!(["invalid_payload_encoding", other]))),
    };
    if payload.len() as u64 > MESSAGE_BODY_MAX_BYTES
        || payload.len() as u64 > u64::from(call.context.config.max_message_size)
    {
        return Err(ApiError::bad_request(format!(
            "payload of {} bytes is over the message size limit",
            payload.len()
        )));
    }
    let properties = properties_from_json(body.0.get("properties"))?;
    let properties =
        hotpath::encode_properties(&properties).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let message = Arc::new(Message {
        exchange: Bytes::from(exchange.to_string()),
        routing_key: Bytes::from(routing_key),
        properties: Bytes::from(properties),
        body: Bytes::from(payload),
    });
    let broker = &call.context.broker;
    let publisher = broker.holder();
    let routed = broker.publish(PublishRequest {
        vhost: vhost.to_string(),
        exchange: exchange.to_string(),
        message,
        publisher,
    })?;
    Ok(json_response(&json!({"routed": routed})))
}

/// `count` messages at most; `ackmode` `ack_requeue_true` puts them back (redelivered),
/// `ack_requeue_false` / `reject_requeue_false` removes them, `reject_requeue_true` puts them
/// back. `truncate` cuts the payload shown.
pub fn get(call: &Call, vhost: &str, name: &str) -> ApiResult {
    let definition = super::queues::existing(call, vhost, name)?;
    let permissions = call.caller.user.permissions.get(vhost).map(|found| &**found);
    check_access(permissions, Access::Read, ResourceKind::Queue, name, vhost, call.caller.name())
        .map_err(ApiError::from_amqp)?;
    if definition.exclusive_owner.is_some() {
        return Err(ApiError::bad_request(format!(
            "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'"
        )));
    }
    let body = Body::new(call.json_body()?)?;
    let count = body.integer("count", 1)?.clamp(0, GET_COUNT_MAX);
    let requeue = match body.required_string("ackmode")?.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => true,
        "ack_requeue_false" | "reject_requeue_false" => false,
        other => return Err(ApiError::bad_value(json!(["invalid_ackmode", other]))),
    };
    let encoding = body.string("encoding")?.unwrap_or_else(|| "auto".into());
    if encoding != "auto" && encoding != "base64" {
        return Err(ApiError::bad_value(json!(["invalid_encoding", encoding])));
    }
    let truncate = match body.0.get("truncate") {
        None | Some(Value::Null) => None,
        _ => Some(body.integer("truncate", 0)?.max(0) as usize),
    };
    let broker = &call.context.broker;
    let holder = broker.holder();
    let mut got = Vec::new();
    let mut sequences = Vec::new();
    for _ in 0..count {
        let request = QueueRequest::Get { holder, no_ack: !requeue };
        let ReplyBody::Get(Some(message)) = broker.queue_op(definition.id, request)? else { break };
        if requeue {
            sequences.push(message.sequence);
        }
        let Some(content) = message.payload.message().cloned() else { break };
        got.push(message_json(&content, message.redelivered, message.message_count, &encoding, truncate));
    }
    if !sequences.is_empty() {
        let settle =
            crate::broker::control::ControlRequest::Settle { queue: definition.id, holder, sequences, requeue: true };
        broker.ask(0, settle)?;
        // Answered by the owner after the settle it reads first (the same mailbox): the
        // messages are back in the queue before this request is answered, as in RabbitMQ.
        broker.queue_op(definition.id, QueueRequest::DeclareOk)?;
    }
    Ok(json_response(&Value::Array(got)))
}

fn message_json(
    message: &Message,
    redelivered: bool,
    remaining: u32,
    encoding: &str,
    truncate: Option<usize>,
) -> Value {
    let body = &message.body[..truncate.map_or(message.body.len(), |limit| limit.min(message.body.len()))];
    let (payload, payload_encoding) = match std::str::from_utf8(body) {
        Ok(text) if encoding == "auto" => (text.to_string(), "string"),
        _ => (base64::engine::general_purpose::STANDARD.encode(body), "base64"),
    };
    let properties = hotpath::parse_properties(&message.properties).map(|parsed| properties_to_json(&parsed));
    json!({
        "payload_bytes": message.body.len(),
        "redelivered": redelivered,
        "exchange": String::from_utf8_lossy(&message.exchange),
        "routing_key": String::from_utf8_lossy(&message.routing_key),
        "message_count": remaining,
        "properties": properties.unwrap_or_else(|_| json!([])),
        "payload": payload,
        "payload_encoding": payload_encoding,
    })
}

/// RabbitMQ writes no properties as `[]` (its empty property list) and others as an object.
fn properties_to_json(properties: &BasicProperties) -> Value {
    let mut object = Map::new();
    let mut text = |key: &str, value: Option<&ShortString>| {
        if let Some(value) = value {
            object.insert(key.into(), json!(value.as_str()));
        }
    };
    text("content_type", properties.content_type().as_ref());
    text("content_encoding", properties.content_encoding().as_ref());
    text("correlation_id", properties.correlation_id().as_ref());
    text("reply_to", properties.reply_to().as_ref());
    text("expiration", properties.expiration().as_ref());
    text("message_id", properties.message_id().as_ref());
    text("type", properties.kind().as_ref());
    text("user_id", properties.user_id().as_ref());
    text("app_id", properties.app_id().as_ref());
    text("cluster_id", properties.cluster_id().as_ref());
    if let Some(mode) = properties.delivery_mode() {
        object.insert("delivery_mode".into(), json!(mode));
    }
    if let Some(priority) = properties.priority() {
        object.insert("priority".into(), json!(priority));
    }
    if let Some(timestamp) = properties.timestamp() {
        object.insert("timestamp".into(), json!(timestamp));
    }
    if let Some(headers) = properties.headers() {
        object.insert("headers".into(), field_table_to_json(headers));
    }
    if object.is_empty() {
        return json!([]);
    }
    Value::Object(object)
}

fn properties_from_json(value: Option<&Value>) -> Result<BasicProperties, ApiError> {
    let object = match value {
        None | Some(Value::Null) => return Ok(BasicProperties::default()),
        Some(Value::Array(items)) if items.is_empty() => return Ok(BasicProperties::default()),
        Some(Value::Object(object)) => Body(object.clone()),
        Some(other) => return Err(ApiError::bad_value(json!(["not_object", other]))),
    };
    let mut properties = BasicProperties::default();
    let text = |key: &str| -> Result<Option<ShortString>, ApiError> { Ok(object.string(key)?.map(ShortString::from)) };
    if let Some(value) = text("content_type")? {
        properties = properties.with_content_type(value);
    }
    if let Some(value) = text("content_encoding")? {
        properties = properties.with_content_encoding(value);
    }
    if let Some(value) = text("correlation_id")? {
        properties = properties.with_correlation_id(value);
    }
    if let Some(value) = text("reply_to")? {
        properties = properties.with_reply_to(value);
    }
    if let Some(value) = text("expiration")? {
        properties = properties.with_expiration(value);
    }
    if let Some(value) = text("message_id")? {
        properties = properties.with_message_id(value);
    }
    if let Some(value) = text("type")? {
        properties = properties.with_type(value);
    }
    if let Some(value) = text("user_id")? {
        properties = properties.with_user_id(value);
    }
    if let Some(value) = text("app_id")? {
        properties = properties.with_app_id(value);
    }
    if object.0.contains_key("delivery_mode") {
        let mode = object.integer("delivery_mode", 1)?;
        properties =
            properties.with_delivery_mode(u8::try_from(mode).map_err(|_| out_of_range("delivery_mode", mode))?);
    }
    if object.0.contains_key("priority") {
        let priority = object.integer("priority", 0)?;
        properties = properties.with_priority(u8::try_from(priority).map_err(|_| out_of_range("priority", priority))?);
    }
    if object.0.contains_key("timestamp") {
        let timestamp = object.integer("timestamp", 0)?;
        properties =
            properties.with_timestamp(u64::try_from(timestamp).map_err(|_| out_of_range("timestamp", timestamp))?);
    }
    if let Some(headers) = object.0.get("headers").filter(|headers| !headers.is_null()) {
        let table: FieldTable =
            json_to_field_table(headers).map_err(|problem| ApiError::bad_request(problem.to_string()))?;
        properties = properties.with_headers(table);
    }
    Ok(properties)
}

fn out_of_range(key: &str, value: i64) -> ApiError {
    ApiError::bad_value(json!([format!("invalid_{key}"), value]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_travel_from_json_to_the_wire_and_back() {
        let given = json!({"delivery_mode": "2", "content_type": "text/plain", "headers": {"a": 1, "b": "x"}});
        let properties = properties_from_json(Some(&given)).expect("valid properties");
        let wire = hotpath::encode_properties(&properties).expect("encodes");
        let parsed = hotpath::parse_properties(&wire).expect("parses");
        let shown = properties_to_json(&parsed);
        assert_eq!(shown["delivery_mode"], json!(2));
        assert_eq!(shown["content_type"], json!("text/plain"));
        assert_eq!(shown["headers"], json!({"a": 1, "b": "x"}));
    }

    #[test]
    fn no_properties_show_as_an_empty_list() {
        assert_eq!(properties_to_json(&BasicProperties::default()), json!([]));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_shown_in_base64() {
        let message = Message {
            exchange: Bytes::new(),
            routing_key: Bytes::from_static(b"q"),
            properties: Bytes::from(hotpath::encode_properties(&BasicProperties::default()).expect("encodes")),
            body: Bytes::from_static(&[0xff, 0x00]),
        };
        let shown = message_json(&message, false, 0, "auto", None);
        assert_eq!((shown["payload"].clone(), shown["payload_encoding"].clone()), (json!("/wA="), json!("base64")));
    }
}
