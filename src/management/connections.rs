//! `/api/connections[/{name}]` (DELETE closes, with the `X-Reason` header as the reason),
//! `/api/channels` and `/api/consumers[/{vhost}]`, gathered from every shard. Monitors and
//! administrators see everything; other users their own connections and channels, and the
//! consumers of the vhosts they may use.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::api::{json_response, ApiError, ApiResult, Call};
use super::http::Response;
use super::listing;
use crate::broker::control::{ChannelInfo, ConnectionInfo, ConsumerInfo};
use crate::ids::ConnId;

/// RabbitMQ's reason when the request gives none.
const DEFAULT_CLOSE_REASON: &str = "Closed via management plugin";

/// "1.2.3.4:5" → ("1.2.3.4", 5); "[::1]:5" → ("::1", 5).
fn split_address(address: &str) -> (String, u64) {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            (host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse().unwrap_or(0))
        }
        None => (address.to_string(), 0),
    }
}

fn connection_json(call: &Call, connection: &ConnectionInfo) -> Value {
    let (peer, local) = connection.name.split_once(" -> ").unwrap_or((connection.name.as_str(), ""));
    let (peer_host, peer_port) = split_address(peer);
    let (host, port) = split_address(local);
    json!({
        "name": connection.name,
        "node": call.context.node,
        "user": connection.user,
        "user_who_performed_action": connection.user,
        "vhost": connection.vhost,
        "peer_host": peer_host,
        "peer_port": peer_port,
        "host": host,
        "port": port,
        "channels": connection.channels,
        "state": "running",
        "protocol": "AMQP 0-9-1",
        "type": "network",
        "ssl": connection.tls,
        "auth_mechanism": "PLAIN",
        "frame_max": connection.frame_max,
        "channel_max": connection.channel_max,
        "client_properties": {},
        "shard": connection.shard,
    })
}

pub fn connections(call: &Call) -> ApiResult {
    let broker = &call.context.broker;
    match call.segments.as_slice() {
        [_] => {
            only_get(call)?;
            let items = broker
                .connections()?
                .iter()
                .filter(|connection| call.caller.sees_user(&connection.user))
                .map(|connection| connection_json(call, connection))
                .collect();
            listing::reply(call, items, &["name"])
        }
        [_, name] => {
            let connections = broker.connections()?;
            let connection = connections
                .iter()
                .find(|connection| connection.name == *name && call.caller.sees_user(&connection.user))
                .ok_or_else(ApiError::not_found)?;
            match call.method() {
                "GET" => Ok(json_response(&connection_json(call, connection))),
                "DELETE" => {
                    if !call.caller.is_admin() && connection.user != call.caller.name() {
                        return Err(ApiError::not_authorised("Not administrator user"));
                    }
                    let reason = call.request.header("x-reason").unwrap_or(DEFAULT_CLOSE_REASON);
                    broker.close_connection(name, reason)?;
                    Ok(Response::empty(204))
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        [_, name, what] if what == "channels" => {
            only_get(call)?;
            let channels = broker.channels()?;
            let items = channels
                .iter()
                .filter(|channel| channel.connection == *name && call.caller.sees_user(&channel.user))
                .map(|channel| channel_json(call, channel))
                .collect();
            listing::reply(call, items, &["name"])
        }
        _ => Err(ApiError::not_found()),
    }
}

fn channel_name(connection: &str, number: u16) -> String {
    format!("{connection} ({number})")
}

fn channel_json(call: &Call, channel: &ChannelInfo) -> Value {
    let peer = channel.connection.split(" -> ").next().unwrap_or_default();
    let (peer_host, peer_port) = split_address(peer);
    json!({
        "name": channel_name(&channel.connection, channel.number),
        "number": channel.number,
        "node": call.context.node,
        "user": channel.user,
        "user_who_performed_action": channel.user,
        "vhost": channel.vhost,
        "connection_details": {"name": channel.connection, "peer_host": peer_host, "peer_port": peer_port},
        "consumer_count": channel.consumers,
        "messages_unacknowledged": channel.unacked,
        "messages_unconfirmed": 0,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "prefetch_count": channel.prefetch_count,
        "global_prefetch_count": 0,
        "confirm": channel.confirm,
        "transactional": false,
        "state": "running",
    })
}

pub fn channels(call: &Call) -> ApiResult {
    let channels = call.context.broker.channels()?;
    match call.segments.as_slice() {
        [_] => {
            only_get(call)?;
            let items = channels
                .iter()
                .filter(|channel| call.caller.sees_user(&channel.user))
                .map(|channel| channel_json(call, channel))
                .collect();
            listing::reply(call, items, &["name"])
        }
        [_, name] => {
            only_get(call)?;
            let channel = channels
                .iter()
                .find(|channel| channel_name(&channel.connection, channel.number) == *name)
                .filter(|channel| call.caller.sees_user(&channel.user))
                .ok_or_else(ApiError::not_found)?;
            Ok(json_response(&channel_json(call, channel)))
        }
        _ => Err(ApiError::not_found()),
    }
}

pub fn consumers(call: &Call) -> ApiResult {
    only_get(call)?;
    let vhost = match call.segments.as_slice() {
        [_] => None,
        [_, vhost] => {
            call.caller.require_vhost(vhost)?;
            Some(vhost.as_str())
        }
        _ => return Err(ApiError::not_found()),
    };
    let broker = &call.context.broker;
    let connections: HashMap<ConnId, ConnectionInfo> =
        broker.connections()?.into_iter().map(|connection| (connection.id, connection)).collect();
    let items = broker
        .consumers()?
        .iter()
        .filter(|consumer| vhost.is_none_or(|vhost| consumer.vhost == vhost))
        .filter(|consumer| call.caller.sees_vhost(&consumer.vhost))
        .map(|consumer| consumer_json(consumer, connections.get(&consumer.holder.conn)))
        .collect();
    listing::reply(call, items, &["queue.vhost", "queue.name", "consumer_tag"])
}

fn consumer_json(consumer: &ConsumerInfo, connection: Option<&ConnectionInfo>) -> Value {
    let connection_name = connection.map(|connection| connection.name.clone()).unwrap_or_default();
    let peer = connection_name.split(" -> ").next().unwrap_or_default();
    let (peer_host, peer_port) = split_address(peer);
    json!({
        "queue": {"name": consumer.queue, "vhost": consumer.vhost},
        "channel_details": {
            "name": channel_name(&connection_name, consumer.holder.channel),
            "number": consumer.holder.channel,
            "connection_name": connection_name,
            "peer_host": peer_host,
            "peer_port": peer_port,
            "user": connection.map(|connection| connection.user.clone()).unwrap_or_default(),
        },
        "consumer_tag": consumer.tag,
        "ack_required": !consumer.no_ack,
        "prefetch_count": consumer.prefetch_count,
        "exclusive": consumer.exclusive,
        "active": true,
        "activity_status": "up",
        "priority": consumer.priority,
        "arguments": {},
    })
}

fn only_get(call: &Call) -> Result<(), ApiError> {
    super::accounts::only_get(call)
}
