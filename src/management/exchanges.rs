//! `/api/exchanges[/{vhost}[/{name}[/publish|/bindings/source|/bindings/destination]]]`. The
//! default exchange is `amq.default` in paths and "" in listings, as in RabbitMQ. Declare and
//! delete go to the definitions writer as exchange.declare/delete do.

use serde_json::{json, Value};

use super::api::{created, json_response, ApiError, ApiResult, Call};
use super::input::Body;
use super::queues::{check, grant};
use super::{bindings, listing, messages};
use crate::broker::definitions_file::field_table_to_json;
use crate::broker::requests::{AdminRequest, ExchangeDeclare};
use crate::broker::snapshot::Exchange;
use crate::broker::users::{Access, ResourceKind};

const KNOWN_TYPES: &[&str] = &["direct", "fanout", "topic", "headers", "x-consistent-hash"];

/// The name in a path: `amq.default` is the default exchange ("").
pub fn from_path(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

pub fn exchanges(call: &Call) -> ApiResult {
    let snapshot = &call.caller.snapshot;
    match call.segments.as_slice() {
        [_] => {
            only_get(call)?;
            let mut items = Vec::new();
            for vhost in snapshot.vhosts.values().filter(|vhost| call.caller.sees_vhost(&vhost.name)) {
                items.extend(vhost.exchanges.values().map(|exchange| exchange_json(&vhost.name, exchange)));
            }
            listing::reply(call, items, &["vhost", "name"])
        }
        [_, vhost] => {
            only_get(call)?;
            call.caller.require_vhost(vhost)?;
            let found = snapshot.vhost(vhost).ok_or_else(ApiError::not_found)?;
            let items = found.exchanges.values().map(|exchange| exchange_json(vhost, exchange)).collect();
            listing::reply(call, items, &["vhost", "name"])
        }
        [_, vhost, name] => {
            let name = from_path(name);
            match call.method() {
                "GET" => {
                    call.caller.require_vhost(vhost)?;
                    let exchange = snapshot
                        .vhost(vhost)
                        .and_then(|found| found.exchanges.get(name))
                        .ok_or_else(ApiError::not_found)?;
                    Ok(json_response(&exchange_json(vhost, exchange)))
                }
                "PUT" => declare(call, vhost, name),
                "DELETE" => delete(call, vhost, name),
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        [_, vhost, name, what] if what == "publish" => {
            if call.method() != "POST" {
                return Err(ApiError::method_not_allowed());
            }
            messages::publish(call, vhost, from_path(name))
        }
        [_, vhost, name, what, side] if what == "bindings" => {
            only_get(call)?;
            match side.as_str() {
                "source" => bindings::of_exchange(call, vhost, from_path(name), true),
                "destination" => bindings::of_exchange(call, vhost, from_path(name), false),
                _ => Err(ApiError::not_found()),
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

/// RabbitMQ shows `policy` only for an exchange that has one.
fn exchange_json(vhost: &str, exchange: &Exchange) -> Value {
    let mut shown = json!({
        "name": exchange.name,
        "vhost": vhost,
        "type": exchange.kind.as_str(),
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": field_table_to_json(&exchange.arguments),
        "user_who_performed_action": "rmq-internal",
    });
    if let Some(policy) = &exchange.policy {
        shown["policy"] = json!(policy.name);
    }
    shown
}

fn declare(call: &Call, vhost: &str, name: &str) -> ApiResult {
    call.caller.require_vhost(vhost)?;
    let body = Body::new(call.json_body()?)?;
    let kind = body.required_string("type")?;
    let durable = body.bool("durable", false)?;
    let auto_delete = body.bool("auto_delete", false)?;
    let internal = body.bool("internal", false)?;
    let arguments = body.arguments()?;
    // The type and the default exchange are judged by the writer first, as for AMQP.
    if KNOWN_TYPES.contains(&kind.as_str()) && !name.is_empty() {
        check(call, vhost, Access::Configure, ResourceKind::Exchange, name)?;
    }
    let existed = call.caller.snapshot.vhost(vhost).is_some_and(|found| found.exchanges.contains_key(name));
    let request = AdminRequest::ExchangeDeclare(ExchangeDeclare {
        vhost: vhost.to_string(),
        name: name.to_string(),
        kind,
        passive: false,
        durable,
        auto_delete,
        internal,
        arguments,
        grant: Some(grant(call, vhost)),
    });
    call.context.broker.admin(request)?;
    Ok(created(!existed))
}

fn delete(call: &Call, vhost: &str, name: &str) -> ApiResult {
    call.caller.require_vhost(vhost)?;
    if call.caller.snapshot.vhost(vhost).is_none_or(|found| !found.exchanges.contains_key(name)) {
        return Err(ApiError::not_found());
    }
    if !name.is_empty() && !name.starts_with("amq.") {
        check(call, vhost, Access::Configure, ResourceKind::Exchange, name)?;
    }
    let if_unused = call.query("if-unused").as_deref() == Some("true");
    let request = AdminRequest::ExchangeDelete { vhost: vhost.to_string(), name: name.to_string(), if_unused };
    call.context.broker.admin(request)?;
    Ok(created(false))
}

fn only_get(call: &Call) -> Result<(), ApiError> {
    super::accounts::only_get(call)
}
