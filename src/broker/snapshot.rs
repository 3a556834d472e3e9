//! The immutable definitions every shard routes with: vhosts, exchanges (with their binding
//! tables), queue definitions and policies.
//!
//! The single writer (shard 0, `definitions.rs`) builds a new `Snapshot` per change by
//! copy-on-write (`Arc::make_mut`), so an unchanged exchange or vhost is shared between
//! versions. Shards swap their `Arc<Snapshot>` when a new one arrives; routing reads it
//! without locks. Nothing here performs I/O or mutates a published snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable};

use super::policy::{AppliedPolicies, Policy, VhostPolicies};
use super::routing::{ExchangeKind, RoutingTable};
use super::users::{Permissions, User, VhostLimits};
use crate::ids::{ConnId, Destination, ExchangeId, QueueId};
use crate::limits::EXCHANGE_HOPS_MAX;

#[derive(Clone, Debug)]
pub struct Exchange {
    pub id: ExchangeId,
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    pub table: RoutingTable<Destination>,
    /// The policy chosen for it (`policy.rs`); kept current by the writer.
    pub policy: Option<Arc<Policy>>,
}

#[derive(Clone, Debug)]
pub struct QueueDef {
    pub id: QueueId,
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub exclusive_owner: Option<ConnId>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The policy and operator policy chosen for it; kept current by the writer, acted on
    /// by the owner shard.
    pub policies: AppliedPolicies,
}

#[derive(Clone, Debug, Default)]
pub struct Vhost {
    pub name: String,
    pub limits: VhostLimits,
    pub exchanges: HashMap<String, Arc<Exchange>>,
    pub exchange_names: HashMap<ExchangeId, String>,
    pub queues: HashMap<String, Arc<QueueDef>>,
    pub policies: VhostPolicies,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    pub vhosts: HashMap<String, Arc<Vhost>>,
    /// Users with their tags and permissions (`users.rs`).
    pub users: HashMap<String, Arc<User>>,
    /// Bumped whenever some queue's chosen policies changed: owner shards then look for
    /// their queues' new settings.
    pub policy_epoch: u64,
}

impl Vhost {
    pub fn exchange_by_id(&self, id: ExchangeId) -> Option<&Arc<Exchange>> {
        self.exchange_names.get(&id).and_then(|name| self.exchanges.get(name))
    }

    /// Appends every queue the message reaches from `exchange`, each once, following
    /// exchange-to-exchange bindings. The default exchange ("") routes to the queue named by
    /// the routing key. `properties` is asked for only when a headers exchange, or a
    /// consistent-hash exchange hashing a header or a property, is on the path.
    pub fn route(
        &self,
        exchange: &Exchange,
        routing_key: &[u8],
        properties: &mut dyn FnMut() -> Option<BasicProperties>,
        out: &mut Vec<QueueId>,
    ) {
        let mut pending: Vec<Destination> = Vec::new();
        let mut visited: Vec<ExchangeId> = vec![exchange.id];
        let mut parsed: Option<Option<BasicProperties>> = None;
        let mut current = Some(exchange);
        let mut hops = 0;
        while let Some(source) = current {
            if source.name.is_empty() {
                if let Some(queue) = std::str::from_utf8(routing_key).ok().and_then(|name| self.queues.get(name)) {
                    pending.push(Destination::Queue(queue.id));
                }
            } else if source.table.is_headers() {
                let found = parsed.get_or_insert_with(&mut *properties);
                let headers = found.as_ref().and_then(|found| found.headers().as_ref());
                source.table.route(routing_key, headers, &mut pending);
            } else if let Some(ring) = source.table.hash_ring().filter(|ring| ring.hash_on.reads_properties()) {
                let found = parsed.get_or_insert_with(&mut *properties);
                pending.extend(ring.route(ring.hash_on.hash(routing_key, found.as_ref())));
            } else {
                source.table.route(routing_key, None, &mut pending);
            }
            current = None;
            while let Some(destination) = pending.pop() {
                match destination {
                    Destination::Queue(queue) => out.push(queue),
                    Destination::Exchange(id) if hops < EXCHANGE_HOPS_MAX && !visited.contains(&id) => {
                        visited.push(id);
                        if let Some(next) = self.exchange_by_id(id) {
                            hops += 1;
                            current = Some(next);
                            break;
                        }
                    }
                    Destination::Exchange(_) => {}
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

impl Vhost {
    /// Routes like `route`; a message no queue takes goes on to the exchange's
    /// `alternate-exchange` (and that one's, up to `EXCHANGE_HOPS_MAX`), as RabbitMQ does.
    /// The argument is looked up only for an unroutable message.
    pub fn route_with_alternates(
        &self,
        exchange: &Exchange,
        routing_key: &[u8],
        properties: &mut dyn FnMut() -> Option<BasicProperties>,
        out: &mut Vec<QueueId>,
    ) {
        let mut current = exchange;
        let mut visited = vec![exchange.id];
        loop {
            self.route(current, routing_key, properties, out);
            if !out.is_empty() || visited.len() > EXCHANGE_HOPS_MAX {
                return;
            }
            // The argument wins over a policy's `alternate-exchange` (`rabbit_policy:get_arg`).
            let alternate = match current.arguments.inner().get("alternate-exchange") {
                Some(AMQPValue::LongString(name)) => std::str::from_utf8(name.as_bytes()).ok(),
                Some(AMQPValue::ShortString(name)) => Some(name.as_str()),
                _ => current.policy.as_ref().and_then(|policy| policy.settings.alternate_exchange.as_deref()),
            };
            match alternate.and_then(|name| self.exchanges.get(name)) {
                Some(next) if !visited.contains(&next.id) => {
                    visited.push(next.id);
                    current = next;
                }
                _ => return,
            }
        }
    }
}

impl Snapshot {
    pub fn vhost(&self, name: &str) -> Option<&Arc<Vhost>> {
        self.vhosts.get(name)
    }

    pub fn user(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// What `user` may do in `vhost` (None: nothing, or no such user).
    pub fn permissions(&self, user: &str, vhost: &str) -> Option<&Arc<Permissions>> {
        self.users.get(user)?.permissions.get(vhost)
    }
}
