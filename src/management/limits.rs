//! `/api/vhost-limits[/{vhost}[/{limit}]]` and `/api/user-limits[/{user}[/{limit}]]`: the
//! limits `spatemq ctl set_vhost_limits` / `set_user_limits` set, read and changed one key at
//! a time as RabbitMQ's management API does (`PUT .../max-queues` with `{"value": 10}`).
//!
//! A negative value is "no limit", as in RabbitMQ; SpateMQ keeps no limit then, so the key is
//! not listed afterwards (RabbitMQ lists it with its negative value).

use serde_json::{json, Map, Value};

use super::api::{json_response, ApiError, ApiResult, Call};
use super::input::Body;
use crate::broker::control::AccountChange;
use crate::broker::users::{UserLimits, VhostLimits};

const VHOST_KEYS: &[&str] = &["max-connections", "max-queues"];
/// RabbitMQ also has `max-channels`; SpateMQ does not apply it, so it is refused.
const USER_KEYS: &[&str] = &["max-connections"];

fn limits_object(pairs: &[(&str, Option<u32>)]) -> Value {
    let mut object = Map::new();
    for (key, limit) in pairs {
        if let Some(limit) = limit {
            object.insert((*key).to_string(), json!(limit));
        }
    }
    Value::Object(object)
}

fn vhost_value(limits: &VhostLimits) -> Value {
    limits_object(&[("max-connections", limits.max_connections), ("max-queues", limits.max_queues)])
}

fn user_value(limits: &UserLimits) -> Value {
    limits_object(&[("max-connections", limits.max_connections)])
}

/// `{"value": N}`: a number (or its text); negative is no limit. RabbitMQ's reasons.
fn limit_value(call: &Call, key: &str) -> Result<Option<u32>, ApiError> {
    let body = Body::new(call.json_body()?)?;
    let value = match body.0.get("value") {
        None => return Err(ApiError::bad_request("[{key_missing,value}]")),
        Some(Value::Number(number)) => number.as_i64(),
        Some(Value::String(text)) => text.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    let Some(value) = value else {
        let shown = body.0.get("value").map(Value::to_string).unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "Validation failed\n\n{key} should be a number, actually was {shown}\n"
        )));
    };
    Ok(u32::try_from(value).ok())
}

pub fn vhost_limits(call: &Call) -> ApiResult {
    let snapshot = &call.caller.snapshot;
    match (call.method(), call.segments.as_slice()) {
        ("GET", [_]) => {
            let mut vhosts: Vec<_> =
                snapshot.vhosts.values().filter(|vhost| call.caller.sees_vhost(&vhost.name)).collect();
            vhosts.sort_by(|a, b| a.name.cmp(&b.name));
            let rows: Vec<Value> = vhosts
                .into_iter()
                .filter(|vhost| vhost.limits != VhostLimits::default())
                .map(|vhost| json!({"vhost": vhost.name, "value": vhost_value(&vhost.limits)}))
                .collect();
            Ok(json_response(&Value::Array(rows)))
        }
        ("GET", [_, name]) => {
            call.caller.require_vhost(name)?;
            let vhost = snapshot.vhost(name).ok_or_else(ApiError::not_found)?;
            let rows = if vhost.limits == VhostLimits::default() {
                Vec::new()
            } else {
                vec![json!({"vhost": vhost.name, "value": vhost_value(&vhost.limits)})]
            };
            Ok(json_response(&Value::Array(rows)))
        }
        (method @ ("PUT" | "DELETE"), [_, name, key]) => {
            call.caller.require_admin()?;
            let Some(vhost) = snapshot.vhost(name) else {
                return Err(ApiError::new(404, "not_found", "vhost_not_found"));
            };
            if !VHOST_KEYS.contains(&key.as_str()) {
                let reason = format!("Validation failed\n\nUnrecognised terms [{{<<\"{key}\">>,..}}] in limits\n");
                return Err(ApiError::bad_request(reason));
            }
            let limit = if method == "PUT" { limit_value(call, key)? } else { None };
            let mut limits = vhost.limits;
            match key.as_str() {
                "max-connections" => limits.max_connections = limit,
                _ => limits.max_queues = limit,
            }
            call.context.broker.change(AccountChange::SetVhostLimits { name: name.clone(), limits })?;
            Ok(super::http::Response::empty(204))
        }
        ("GET" | "PUT" | "DELETE", _) => Err(ApiError::not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

pub fn user_limits(call: &Call) -> ApiResult {
    let snapshot = &call.caller.snapshot;
    match (call.method(), call.segments.as_slice()) {
        ("GET", [_]) => {
            call.caller.require_admin()?;
            let mut users: Vec<_> = snapshot.users.values().collect();
            users.sort_by(|a, b| a.name.cmp(&b.name));
            let rows: Vec<Value> = users
                .into_iter()
                .filter(|user| user.limits != UserLimits::default())
                .map(|user| json!({"user": user.name, "value": user_value(&user.limits)}))
                .collect();
            Ok(json_response(&Value::Array(rows)))
        }
        ("GET", [_, name]) => {
            call.caller.require_admin()?;
            let user = snapshot.user(name).ok_or_else(ApiError::not_found)?;
            let rows = if user.limits == UserLimits::default() {
                Vec::new()
            } else {
                vec![json!({"user": user.name, "value": user_value(&user.limits)})]
            };
            Ok(json_response(&Value::Array(rows)))
        }
        (method @ ("PUT" | "DELETE"), [_, name, key]) => {
            call.caller.require_admin()?;
            if snapshot.user(name).is_none() {
                return Err(ApiError::bad_value(json!(["no_such_user", name])));
            }
            if !USER_KEYS.contains(&key.as_str()) {
                let reason = if key == "max-channels" {
                    "the user limit max-channels is not supported by SpateMQ (max-connections is)".to_string()
                } else {
                    format!("Unrecognised terms [{{<<\"{key}\">>,..}}] in user-limits")
                };
                return Err(ApiError::bad_request(reason));
            }
            let limit = if method == "PUT" { limit_value(call, key)? } else { None };
            let limits = UserLimits { max_connections: limit };
            call.context.broker.change(AccountChange::SetUserLimits { name: name.clone(), limits })?;
            Ok(super::http::Response::empty(204))
        }
        ("GET" | "PUT" | "DELETE", _) => Err(ApiError::not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}
