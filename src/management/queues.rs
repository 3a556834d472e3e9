//! `/api/queues[/{vhost}[/{name}[/contents|/get|/bindings]]]`: listings from the queues'
//! owners; declare, delete, purge and get through the same requests an AMQP channel sends
//! (the definitions writer, the owner shard), so they are checked the same way.

use serde_json::{json, Value};

use super::api::{created, json_response, ApiError, ApiResult, Call};
use super::input::Body;
use super::stats::Counted;
use super::{bindings, listing, messages, policies};
use crate::broker::control::QueueInfo;
use crate::broker::definitions_file::field_table_to_json;
use crate::broker::queue_args::QueueType;
use crate::broker::requests::{AdminRequest, QueueDeclare, QueueRequest};
use crate::broker::snapshot::{QueueDef, Snapshot};
use crate::broker::users::{check_access, Access, Grant, ResourceKind};
use crate::ids::ConnId;

pub fn queues(call: &Call) -> ApiResult {
    match call.segments.as_slice() {
        [_] => {
            only_get(call)?;
            let queues = call.context.broker.queues(None)?;
            list(call, queues)
        }
        [_, vhost] => {
            only_get(call)?;
            call.caller.require_vhost(vhost)?;
            let queues = call.context.broker.queues(Some(vhost))?;
            list(call, queues)
        }
        [_, vhost, name] => match call.method() {
            "GET" => {
                call.caller.require_vhost(vhost)?;
                let queue = call.context.broker.queue(vhost, name)?.ok_or_else(ApiError::not_found)?;
                Ok(json_response(&queue_json(call, &call.caller.snapshot, &queue)))
            }
            "PUT" => declare(call, vhost, name),
            "DELETE" => delete(call, vhost, name),
            _ => Err(ApiError::method_not_allowed()),
        },
        [_, vhost, name, what] => match (what.as_str(), call.method()) {
            ("contents", "DELETE") => purge(call, vhost, name),
            ("get", "POST") => messages::get(call, vhost, name),
            ("bindings", "GET") => bindings::of_queue(call, vhost, name),
            ("contents" | "get" | "bindings", _) => Err(ApiError::method_not_allowed()),
            _ => Err(ApiError::not_found()),
        },
        _ => Err(ApiError::not_found()),
    }
}

fn list(call: &Call, queues: Vec<QueueInfo>) -> ApiResult {
    let snapshot = &call.caller.snapshot;
    let items = queues
        .iter()
        .filter(|queue| call.caller.sees_vhost(&queue.vhost))
        .map(|queue| queue_json(call, snapshot, queue))
        .collect();
    listing::reply(call, items, &["vhost", "name"])
}

fn queue_json(call: &Call, snapshot: &Snapshot, queue: &QueueInfo) -> Value {
    let definition = snapshot.vhost(&queue.vhost).and_then(|vhost| vhost.queues.get(&queue.name));
    let arguments = definition.map_or_else(|| json!({}), |definition| field_table_to_json(&definition.arguments));
    let queue_type = definition.map_or(QueueType::Classic, |definition| QueueType::of(&definition.arguments));
    let key = format!("queue\u{0}{}\u{0}{}", queue.vhost, queue.name);
    let object = json!({
        "name": queue.name,
        "vhost": queue.vhost,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive,
        "arguments": arguments,
        "type": queue_type.as_str(),
        "node": call.context.node,
        "state": "running",
        "policy": policies::shown_name(&queue.policy),
        "operator_policy": policies::shown_name(&queue.operator_policy),
        "effective_policy_definition": queue.effective_policy_definition,
        "exclusive_consumer_tag": null,
        "consumers": queue.consumers,
        "message_bytes_ready": queue.ready_bytes,
        "message_stats": call.context.rates.message_stats(&key, &queue.stats, Counted::Queue),
    });
    call.context.rates.with_message_counts(&key, object, queue.messages_ready, queue.messages_unacknowledged)
}

/// The caller's rights in `vhost`, for the writer's checks.
pub fn grant(call: &Call, vhost: &str) -> Grant {
    Grant { user: call.caller.name().to_string(), permissions: call.caller.user.permissions.get(vhost).cloned() }
}

pub fn check(call: &Call, vhost: &str, access: Access, kind: ResourceKind, name: &str) -> Result<(), ApiError> {
    let permissions = call.caller.user.permissions.get(vhost).map(|found| &**found);
    check_access(permissions, access, kind, name, vhost, call.caller.name()).map_err(ApiError::from_amqp)
}

fn declare(call: &Call, vhost: &str, name: &str) -> ApiResult {
    call.caller.require_vhost(vhost)?;
    let body = Body::new(call.json_body()?)?;
    let durable = body.bool("durable", false)?;
    let auto_delete = body.bool("auto_delete", false)?;
    let arguments = body.arguments()?;
    // A reserved name is refused by the writer first, as RabbitMQ checks the name first.
    if !name.starts_with("amq.") {
        check(call, vhost, Access::Configure, ResourceKind::Queue, name)?;
    }
    let existed = call.caller.snapshot.vhost(vhost).is_some_and(|found| found.queues.contains_key(name));
    let broker = &call.context.broker;
    let holder = broker.holder();
    let request = AdminRequest::QueueDeclare(QueueDeclare {
        vhost: vhost.to_string(),
        name: name.to_string(),
        passive: false,
        durable,
        exclusive: false,
        auto_delete,
        arguments,
        conn: ConnId { shard: 0, local: holder.conn.local },
        grant: Some(grant(call, vhost)),
    });
    broker.admin(request)?;
    Ok(created(!existed))
}

fn delete(call: &Call, vhost: &str, name: &str) -> ApiResult {
    call.caller.require_vhost(vhost)?;
    if call.caller.snapshot.vhost(vhost).is_none_or(|found| !found.queues.contains_key(name)) {
        return Err(ApiError::not_found());
    }
    check(call, vhost, Access::Configure, ResourceKind::Queue, name)?;
    let flag = |key: &str| call.query(key).as_deref() == Some("true");
    let broker = &call.context.broker;
    let request = AdminRequest::QueueDelete {
        vhost: vhost.to_string(),
        name: name.to_string(),
        if_unused: flag("if-unused"),
        if_empty: flag("if-empty"),
        holder: broker.holder(),
    };
    broker.admin(request)?;
    Ok(created(false))
}

/// The queue `name` of `vhost` as the caller's snapshot has it: 404 without it, or without
/// access to the vhost.
pub fn existing(call: &Call, vhost: &str, name: &str) -> Result<std::sync::Arc<QueueDef>, ApiError> {
    call.caller.require_vhost(vhost)?;
    call.caller.snapshot.vhost(vhost).and_then(|found| found.queues.get(name).cloned()).ok_or_else(ApiError::not_found)
}

fn purge(call: &Call, vhost: &str, name: &str) -> ApiResult {
    let definition = existing(call, vhost, name)?;
    check(call, vhost, Access::Read, ResourceKind::Queue, name)?;
    call.context.broker.queue_op(definition.id, QueueRequest::Purge)?;
    Ok(created(false))
}

fn only_get(call: &Call) -> Result<(), ApiError> {
    super::accounts::only_get(call)
}
