//! The management HTTP API: RabbitMQ's `/api/...` paths and JSON, so that `rabbitmqadmin`,
//! curl scripts and tools built on RabbitMQ's API work against SpateMQ.
//!
//! It runs on a thread of its own (`http.rs`: hyper on a current-thread tokio runtime) and
//! reaches the shards only through their control inboxes (`broker.rs`), as `spatemq ctl`
//! does: declares and deletes go to the definitions writer, queue work to the queue's owner,
//! listings to every shard. It never locks or borrows shard state, so a slow or hostile HTTP
//! client cannot stall AMQP traffic. The Prometheus endpoint (`prometheus.rs`) is a second
//! listener on the same machinery (`http::serve` takes any handler). The web UI's files
//! (`ui.rs`, embedded) are served on the management port beside `/api`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::alarms::Alarms;
use crate::config::Config;
use crate::shard::mailbox::Mailboxes;

mod accounts;
mod api;
mod auth;
mod bindings;
mod broker;
mod connections;
mod definitions;
mod exchanges;
pub mod http;
mod input;
mod limits;
mod listing;
mod messages;
mod overview;
mod policies;
pub mod prometheus;
mod queues;
mod stats;
mod ui;

pub use http::HttpServer;

/// What every request handler may use.
pub struct Context {
    broker: broker::Broker,
    config: Arc<Config>,
    alarms: Arc<Alarms>,
    /// This node's name, `spatemq@HOST` (RabbitMQ's `rabbit@HOST`).
    node: String,
    started: Instant,
    management_address: SocketAddr,
    amqp_addresses: Vec<SocketAddr>,
    amqps_addresses: Vec<SocketAddr>,
    rates: stats::Rates,
}

impl Context {
    /// `/api/overview`'s `listeners`.
    fn listeners(&self) -> Value {
        let mut listeners = Vec::new();
        let mut add = |protocol: &str, address: &SocketAddr| {
            listeners.push(json!({
                "node": self.node,
                "protocol": protocol,
                "ip_address": address.ip().to_string(),
                "port": address.port(),
                "socket_opts": {},
            }));
        };
        for address in &self.amqp_addresses {
            add("amqp", address);
        }
        for address in &self.amqps_addresses {
            add("amqp/ssl", address);
        }
        add("http", &self.management_address);
        if self.config.prometheus_port != 0 {
            add("http/prometheus", &SocketAddr::new(self.config.prometheus_bind, self.config.prometheus_port));
        }
        Value::Array(listeners)
    }
}

/// What the management API needs from the broker that starts it.
pub struct Start {
    pub config: Arc<Config>,
    pub mailboxes: Arc<Mailboxes>,
    pub alarms: Arc<Alarms>,
    pub amqp_addresses: Vec<SocketAddr>,
    pub amqps_addresses: Vec<SocketAddr>,
}

/// Listens on `--management-bind`:`--management-port` and serves the API; None when the port
/// is 0 (disabled).
pub fn start(start: Start) -> std::io::Result<Option<HttpServer>> {
    let config = start.config;
    if config.management_port == 0 {
        return Ok(None);
    }
    let listener = http::bind(SocketAddr::new(config.management_bind, config.management_port))?;
    let context = Arc::new(Context {
        broker: broker::Broker::new(start.mailboxes),
        node: format!("spatemq@{}", host_name()),
        started: Instant::now(),
        management_address: listener.local_addr()?,
        amqp_addresses: start.amqp_addresses,
        amqps_addresses: start.amqps_addresses,
        alarms: start.alarms,
        config,
        rates: stats::Rates::default(),
    });
    let handler: http::Handler = Arc::new(move |request| api::handle(&context, request));
    http::serve("management", listener, handler).map(Some)
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
