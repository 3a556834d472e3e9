//! `/api/vhosts`, `/api/users` and `/api/permissions`: the same account changes as
//! `spatemq ctl add_user`/`add_vhost`/`set_permissions` make, through the definitions writer.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::api::{created, json_response, ApiError, ApiResult, Call};
use super::input::Body;
use super::listing;
use super::stats::Counted;
use crate::broker::control::{AccountChange, MessageStats, QueueInfo};
use crate::broker::definitions_file;
use crate::broker::passwords::HashAlgorithm;
use crate::broker::users::{Permissions, User};

pub fn vhosts(call: &Call) -> ApiResult {
    let snapshot = &call.caller.snapshot;
    match call.segments.as_slice() {
        [_] => {
            if call.method() != "GET" {
                return Err(ApiError::method_not_allowed());
            }
            let queues = call.context.broker.queues(None)?;
            let channel_side = call.context.broker.channel_stats()?;
            let mut names: Vec<&String> = snapshot.vhosts.keys().filter(|name| call.caller.sees_vhost(name)).collect();
            names.sort();
            let items = names.into_iter().map(|name| vhost_json(call, name, &queues, &channel_side)).collect();
            listing::reply(call, items, &["name"])
        }
        [_, name] => match call.method() {
            "GET" => {
                call.caller.require_vhost(name)?;
                let queues = call.context.broker.queues(Some(name))?;
                let channel_side = call.context.broker.channel_stats()?;
                Ok(json_response(&vhost_json(call, name, &queues, &channel_side)))
            }
            "PUT" => {
                call.caller.require_admin()?;
                if snapshot.vhost(name).is_some() {
                    return Ok(created(false));
                }
                let broker = &call.context.broker;
                broker.change(AccountChange::AddVhost { name: name.clone() })?;
                // RabbitMQ's management gives the user who made the vhost full permissions in it.
                broker.change(AccountChange::SetPermissions {
                    user: call.caller.name().to_string(),
                    vhost: name.clone(),
                    permissions: Box::new(Permissions::all()),
                })?;
                Ok(created(true))
            }
            "DELETE" => {
                call.caller.require_admin()?;
                if snapshot.vhost(name).is_none() {
                    return Err(ApiError::not_found());
                }
                call.context.broker.change(AccountChange::DeleteVhost { name: name.clone() })?;
                Ok(created(false))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        [_, name, what] if what == "permissions" => {
            only_get(call)?;
            call.caller.require_admin()?;
            if snapshot.vhost(name).is_none() {
                return Err(ApiError::not_found());
            }
            let items = permission_rows(call).into_iter().filter(|row| row["vhost"] == json!(name)).collect();
            listing::reply(call, items, &["user"])
        }
        _ => Err(ApiError::not_found()),
    }
}

/// `channel_side`: the confirms and returns of each vhost's channels.
fn vhost_json(call: &Call, name: &str, queues: &[QueueInfo], channel_side: &HashMap<String, MessageStats>) -> Value {
    let (mut ready, mut unacked, mut stats) = (0, 0, channel_side.get(name).copied().unwrap_or_default());
    for queue in queues.iter().filter(|queue| queue.vhost == name) {
        ready += queue.messages_ready;
        unacked += queue.messages_unacknowledged;
        stats.add(&queue.stats);
    }
    let description = if name == "/" { "Default virtual host" } else { "" };
    let key = format!("vhost\u{0}{name}");
    let object = json!({
        "name": name,
        "description": description,
        "tags": [],
        "default_queue_type": "undefined",
        "metadata": {"description": description, "tags": []},
        "tracing": false,
        "cluster_state": {call.context.node.clone(): "running"},
        "message_stats": call.context.rates.message_stats(&key, &stats, Counted::WithChannels),
    });
    call.context.rates.with_message_counts(&key, object, ready, unacked)
}

pub fn users(call: &Call) -> ApiResult {
    call.caller.require_admin()?;
    let snapshot = &call.caller.snapshot;
    match call.segments.as_slice() {
        [_] => {
            only_get(call)?;
            let items = snapshot.users.values().map(|user| user_json(user)).collect();
            listing::reply(call, items, &["name"])
        }
        [_, name] => match call.method() {
            "GET" => {
                let user = snapshot.user(name).ok_or_else(ApiError::not_found)?;
                Ok(json_response(&user_json(user)))
            }
            "PUT" => put_user(call, name),
            "DELETE" => {
                if snapshot.user(name).is_none() {
                    return Err(ApiError::not_found());
                }
                call.context.broker.change(AccountChange::DeleteUser { name: name.clone() })?;
                Ok(created(false))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        [_, name, what] if what == "permissions" => {
            only_get(call)?;
            if snapshot.user(name).is_none() {
                return Err(ApiError::not_found());
            }
            let items = permission_rows(call).into_iter().filter(|row| row["user"] == json!(name)).collect();
            listing::reply(call, items, &["vhost"])
        }
        _ => Err(ApiError::not_found()),
    }
}

fn user_json(user: &User) -> Value {
    let mut limits = serde_json::Map::new();
    if let Some(max) = user.limits.max_connections {
        limits.insert("max-connections".into(), max.into());
    }
    json!({
        "name": user.name,
        "password_hash": user.password.to_base64(),
        "hashing_algorithm": user.password.algorithm().rabbit_name(),
        "tags": user.tags,
        "limits": limits,
    })
}

/// PUT /api/users/{name}: `password` or `password_hash` (+ `hashing_algorithm`), and `tags`.
/// An existing user keeps its password unless one is given.
fn put_user(call: &Call, name: &str) -> ApiResult {
    let body = Body::new(call.json_body()?)?;
    let tags = body.words("tags")?;
    let password = body.string("password")?;
    let password_hash = body.string("password_hash")?;
    let algorithm =
        body.string("hashing_algorithm")?.unwrap_or_else(|| HashAlgorithm::for_unnamed(None).rabbit_name().to_string());
    let given = password.is_some() || password_hash.is_some();
    let file_user = definitions_file::User {
        name: name.to_string(),
        password_hash,
        hashing_algorithm: algorithm,
        password,
        tags: tags.clone(),
        limits: Default::default(),
    };
    let hash = file_user.password_hash().map_err(ApiError::bad_request)?;
    let broker = &call.context.broker;
    if call.caller.snapshot.user(name).is_none() {
        broker.change(AccountChange::AddUser { name: name.to_string(), password: hash, tags })?;
        return Ok(created(true));
    }
    if given {
        broker.change(AccountChange::ChangePassword { name: name.to_string(), password: hash })?;
    }
    broker.change(AccountChange::SetTags { name: name.to_string(), tags })?;
    Ok(created(false))
}

pub fn permissions(call: &Call) -> ApiResult {
    call.caller.require_admin()?;
    let snapshot = &call.caller.snapshot;
    match call.segments.as_slice() {
        [_] => {
            only_get(call)?;
            listing::reply(call, permission_rows(call), &["vhost", "user"])
        }
        [_, vhost, user] => match call.method() {
            "GET" => {
                let permissions = snapshot.permissions(user, vhost).ok_or_else(ApiError::not_found)?;
                Ok(json_response(&permission_json(user, vhost, permissions)))
            }
            "PUT" => {
                if snapshot.vhost(vhost).is_none() || snapshot.user(user).is_none() {
                    return Err(ApiError::not_found());
                }
                let new = snapshot.permissions(user, vhost).is_none();
                let body = Body::new(call.json_body()?)?;
                let permissions = Permissions::new(
                    &body.required_string("configure")?,
                    &body.required_string("write")?,
                    &body.required_string("read")?,
                )
                .map_err(ApiError::bad_request)?;
                let change = AccountChange::SetPermissions {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    permissions: Box::new(permissions),
                };
                call.context.broker.change(change)?;
                Ok(created(new))
            }
            "DELETE" => {
                if snapshot.permissions(user, vhost).is_none() {
                    return Err(ApiError::not_found());
                }
                let change = AccountChange::ClearPermissions { user: user.clone(), vhost: vhost.clone() };
                call.context.broker.change(change)?;
                Ok(created(false))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        _ => Err(ApiError::not_found()),
    }
}

fn permission_rows(call: &Call) -> Vec<Value> {
    let mut rows = Vec::new();
    for user in call.caller.snapshot.users.values() {
        for (vhost, permissions) in &user.permissions {
            rows.push(permission_json(&user.name, vhost, permissions));
        }
    }
    rows
}

fn permission_json(user: &str, vhost: &str, permissions: &Permissions) -> Value {
    let [configure, write, read] = permissions.sources();
    json!({"user": user, "vhost": vhost, "configure": configure, "write": write, "read": read})
}

pub fn only_get(call: &Call) -> Result<(), ApiError> {
    if call.method() != "GET" {
        return Err(ApiError::method_not_allowed());
    }
    Ok(())
}
