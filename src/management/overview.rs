//! `/api/overview`, `/api/whoami`, `/api/nodes`, `/api/cluster-name`, `/api/extensions`, the
//! health checks and `/api/aliveness-test/{vhost}`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::api::{json_response, ApiError, ApiResult, Call};
use super::stats::{Counted, Kind};
use super::Context;
use crate::broker::control::{PublishRequest, ShardMetrics};
use crate::broker::definitions_file::EXPORT_RABBITMQ_VERSION;
use crate::broker::requests::{AdminRequest, QueueDeclare, QueueRequest, ReplyBody};
use crate::codec::message::Message;
use crate::ids::ConnId;

const EXCHANGE_TYPES: &[(&str, &str)] = &[
    ("direct", "AMQP direct exchange, as per the AMQP specification"),
    ("fanout", "AMQP fanout exchange, as per the AMQP specification"),
    ("headers", "AMQP headers exchange, as per the AMQP specification"),
    ("topic", "AMQP topic exchange, as per the AMQP specification"),
    ("x-consistent-hash", "Consistent Hashing Exchange"),
];

fn exchange_types() -> Value {
    Value::Array(
        EXCHANGE_TYPES
            .iter()
            .map(|(name, description)| json!({"name": name, "description": description, "enabled": true}))
            .collect(),
    )
}

fn only_get(call: &Call) -> Result<(), ApiError> {
    if call.method() != "GET" {
        return Err(ApiError::method_not_allowed());
    }
    Ok(())
}

pub fn overview(call: &Call) -> ApiResult {
    only_get(call)?;
    let context = call.context;
    let snapshot = &call.caller.snapshot;
    let broker = &context.broker;
    let queues: Vec<_> =
        broker.queues(None)?.into_iter().filter(|queue| call.caller.sees_vhost(&queue.vhost)).collect();
    let connections = broker.connections()?;
    let channels = broker.channels()?;
    let consumers = broker.consumers()?;
    let shards = broker.metrics(false)?;
    let mut stats = crate::broker::control::MessageStats::default();
    for queue in &queues {
        stats.add(&queue.stats);
    }
    for shard in &shards {
        for (_, channel_side) in shard.vhost_stats.iter().filter(|(vhost, _)| call.caller.sees_vhost(vhost)) {
            stats.add(channel_side);
        }
    }
    // What a user sees depends on the vhosts it may see: rates are kept per view.
    let view = if call.caller.is_monitor() {
        String::from("overview")
    } else {
        format!("overview\u{0}{}", call.caller.name())
    };
    let message_stats = context.rates.message_stats(&view, &stats, Counted::WithChannels);
    let ready: u64 = queues.iter().map(|queue| queue.messages_ready).sum();
    let unacked: u64 = queues.iter().map(|queue| queue.messages_unacknowledged).sum();
    let exchanges: usize = snapshot
        .vhosts
        .values()
        .filter(|vhost| call.caller.sees_vhost(&vhost.name))
        .map(|vhost| vhost.exchanges.len())
        .sum();
    let mut object = json!({
        "management_version": EXPORT_RABBITMQ_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(),
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "SpateMQ",
        "rabbitmq_version": EXPORT_RABBITMQ_VERSION,
        "cluster_name": context.node,
        "erlang_version": "",
        "erlang_full_version": "",
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": message_stats,
        "churn_rates": {},
        "queue_totals": context.rates.with_message_counts(&view, json!({}), ready, unacked),
        "object_totals": {
            "channels": channels.iter().filter(|channel| call.caller.sees_user(&channel.user)).count(),
            "connections": connections.iter().filter(|connection| call.caller.sees_user(&connection.user)).count(),
            "consumers": consumers.iter().filter(|consumer| call.caller.sees_vhost(&consumer.vhost)).count(),
            "exchanges": exchanges,
            "queues": queues.len(),
        },
        "statistics_db_event_queue": 0,
        "node": context.node,
        "listeners": context.listeners(),
        "contexts": [{
            "node": context.node,
            "description": "RabbitMQ Management",
            "path": "/",
            "ip": context.management_address.ip().to_string(),
            "port": context.management_address.port().to_string(),
        }],
    });
    // SpateMQ's own: the load of each shard (a node-wide view, for monitoring users).
    if call.caller.is_monitor() {
        object["shards"] = Value::Array(shards.iter().map(|shard| shard_load(context, shard)).collect());
    }
    Ok(json_response(&object))
}

/// One shard's load: its objects, its mailbox depth, its loop turns (and their rate), and
/// `busy`, the share of the last seconds its thread spent on the CPU (0 to 1).
fn shard_load(context: &super::Context, shard: &ShardMetrics) -> Value {
    let key = format!("shard\u{0}{}", shard.shard);
    let rates = context.rates.rates(&key, &[shard.loop_turns as f64, shard.cpu_micros as f64], Kind::Counter);
    let busy = (rates[1] / 1_000_000.0).clamp(0.0, 1.0);
    json!({
        "shard": shard.shard,
        "connections": shard.connections,
        "channels": shard.channels,
        "consumers": shard.consumers,
        "queues": shard.queues,
        "messages_ready": shard.totals.messages_ready,
        "messages_unacknowledged": shard.totals.messages_unacked,
        "mailbox_depth": shard.mailbox_depth,
        "loop_turns": shard.loop_turns,
        "loop_turns_details": {"rate": (rates[0] * 10.0).round() / 10.0},
        "busy": (busy * 1000.0).round() / 1000.0,
        "fsyncs": shard.fsyncs,
        "store_written_bytes": shard.store_written_bytes,
    })
}

pub fn whoami(call: &Call) -> ApiResult {
    only_get(call)?;
    Ok(json_response(&json!({"name": call.caller.name(), "tags": call.caller.user.tags})))
}

pub fn cluster_name(call: &Call) -> ApiResult {
    only_get(call)?;
    Ok(json_response(&json!({"name": call.context.node})))
}

/// The web UI's plugins: none.
pub fn extensions(call: &Call) -> ApiResult {
    only_get(call)?;
    Ok(json_response(&json!([])))
}

pub fn nodes(call: &Call) -> ApiResult {
    only_get(call)?;
    call.caller.require_monitor()?;
    let node = node(call.context);
    match call.segments.get(1) {
        None => Ok(json_response(&Value::Array(vec![node]))),
        Some(name) if *name == call.context.node && call.segments.len() == 2 => Ok(json_response(&node)),
        Some(_) => Err(ApiError::not_found()),
    }
}

fn node(context: &Context) -> Value {
    let config = &context.config;
    let mem_limit = config.memory_high_watermark.bytes(crate::alarms::total_memory_bytes());
    json!({
        "name": context.node,
        "type": "disc",
        "running": true,
        "os_pid": std::process::id().to_string(),
        "mem_used": crate::alarms::resident_bytes().unwrap_or(0),
        "mem_limit": mem_limit,
        "mem_alarm": context.alarms.memory_alarm(),
        "mem_calculation_strategy": "rss",
        "disk_free": crate::alarms::free_disk_bytes(&config.data_dir).unwrap_or(0),
        "disk_free_limit": config.disk_free_limit_bytes,
        "disk_free_alarm": context.alarms.disk_alarm(),
        "processors": std::thread::available_parallelism().map_or(1, |count| count.get()),
        "uptime": context.started.elapsed().as_millis() as u64,
        "run_queue": 0,
        "partitions": [],
        "rates_mode": "basic",
        "exchange_types": exchange_types(),
        "applications": [],
        "contexts": [],
        "db_dir": config.data_dir.display().to_string(),
        "enabled_plugins": ["rabbitmq_management"],
        "being_drained": false,
        "shards": config.shards,
    })
}

/// `/api/health/checks/alarms` and `.../local-alarms`: 200 `{"status":"ok"}`, or 503 with the
/// alarms raised, as RabbitMQ answers.
pub fn health(call: &Call) -> ApiResult {
    only_get(call)?;
    let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let check = match segments.as_slice() {
        [_, "checks", rest @ ..] if !rest.is_empty() => rest,
        _ => return Err(ApiError::not_found()),
    };
    let ok = |extra: Value| {
        let mut body = json!({"status": "ok"});
        if let (Value::Object(fields), Value::Object(more)) = (&mut body, extra) {
            fields.extend(more);
        }
        Ok(json_response(&body))
    };
    let failed = |body: Value| Ok(super::http::Response::new(503, "application/json", body.to_string()));
    match check {
        // One node, every vhost running; no replicas to lose.
        ["virtual-hosts"] => ok(json!({})),
        ["node-is-quorum-critical"] | ["node-is-mirror-sync-critical"] => ok(json!({"reason": "single node cluster"})),
        ["port-listener", port] => {
            let port: u16 = port.parse().map_err(|_| ApiError::bad_request(format!("invalid port: {port}")))?;
            let ports = listener_ports(call.context);
            if ports.contains(&port) {
                ok(json!({"port": port}))
            } else {
                failed(json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports}))
            }
        }
        ["protocol-listener", protocol] => {
            let wanted = normalise_protocol(protocol);
            let protocols = listener_protocols(call.context);
            if protocols.contains(&wanted) {
                ok(json!({"protocol": wanted}))
            } else {
                let body = json!({"status": "failed", "reason": "No active listener", "missing": wanted,
                                  "protocols": protocols});
                failed(body)
            }
        }
        ["alarms"] | ["local-alarms"] => {
            let alarms = &call.context.alarms;
            let mut raised = Vec::new();
            if alarms.memory_alarm() {
                raised.push(json!({"node": call.context.node, "resource": "memory"}));
            }
            if alarms.disk_alarm() {
                raised.push(json!({"node": call.context.node, "resource": "disk"}));
            }
            if raised.is_empty() {
                return Ok(json_response(&json!({"status": "ok"})));
            }
            failed(json!({"status": "failed", "reason": "resource alarm(s) in effect", "alarms": raised}))
        }
        _ => Err(ApiError::not_found()),
    }
}

/// The ports this node listens on (AMQP, AMQPS, management, Prometheus), sorted.
fn listener_ports(context: &super::Context) -> Vec<u16> {
    let mut ports: Vec<u16> = context
        .listeners()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["port"].as_u64())
        .map(|p| p as u16)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn listener_protocols(context: &super::Context) -> Vec<String> {
    let mut protocols: Vec<String> = context
        .listeners()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|listener| listener["protocol"].as_str().map(str::to_string))
        .collect();
    protocols.sort();
    protocols.dedup();
    protocols
}

/// RabbitMQ's spellings of a protocol in the listener check (`amqp091` is `amqp`, `amqps` is
/// `amqp/ssl`, ...).
fn normalise_protocol(protocol: &str) -> String {
    let lower = protocol.to_ascii_lowercase();
    match lower.as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" | "amqp0_9_1" | "amqp" => "amqp".into(),
        "amqps" | "amqp/ssl" | "amqp091/ssl" => "amqp/ssl".into(),
        "prometheus" | "http/prometheus" => "http/prometheus".into(),
        "management" | "http" => "http".into(),
        _ => lower,
    }
}

/// Declares the queue `aliveness-test` in the vhost, publishes a message to it and gets it
/// back, as RabbitMQ's aliveness test does.
pub fn aliveness(call: &Call) -> ApiResult {
    only_get(call)?;
    let [_, vhost] = call.segments.as_slice() else { return Err(ApiError::not_found()) };
    call.caller.require_vhost(vhost)?;
    let broker = &call.context.broker;
    let holder = broker.holder();
    let declare = AdminRequest::QueueDeclare(QueueDeclare {
        vhost: vhost.clone(),
        name: "aliveness-test".into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: Default::default(),
        conn: ConnId { shard: 0, local: holder.conn.local },
        grant: None,
    });
    let queue = match broker.admin(declare)? {
        ReplyBody::ExistingQueue(queue) => queue,
        _ => {
            broker
                .snapshot()?
                .vhost(vhost)
                .and_then(|found| found.queues.get("aliveness-test"))
                .ok_or_else(ApiError::not_found)?
                .id
        }
    };
    let message = Arc::new(Message {
        exchange: Bytes::new(),
        routing_key: Bytes::from_static(b"aliveness-test"),
        properties: Bytes::from_static(&[0, 0]),
        body: Bytes::from_static(b"test_message"),
    });
    broker.publish(PublishRequest { vhost: vhost.clone(), exchange: String::new(), message, publisher: holder })?;
    match broker.queue_op(queue, QueueRequest::Get { holder, no_ack: true })? {
        ReplyBody::Get(Some(_)) => Ok(json_response(&json!({"status": "ok"}))),
        _ => Ok(super::http::Response::new(
            503,
            "application/json",
            json!({"status": "failed", "reason": "the test message did not come back"}).to_string(),
        )),
    }
}
