//! The single writer of definitions (runs on shard 0): applies declares, deletes and bindings
//! to a copy-on-write `Snapshot` and says when a new version must be published.
//!
//! It checks every rule RabbitMQ checks (reserved names, equivalence, exclusivity) and answers
//! with RabbitMQ's reply codes and texts. It owns no queue contents (those live on the owner
//! shard) and performs no I/O: the shard layer publishes snapshots and forwards work.

use std::sync::Arc;

use amq_protocol::types::FieldTable;

use super::equivalence::{check_exchange_equivalence, check_queue_equivalence};
use super::error::{AmqpError, ACCESS_REFUSED, COMMAND_INVALID, PRECONDITION_FAILED, RESOURCE_ERROR};
use super::queue_args::QueueFlags;
use super::requests::{Binding, ExchangeDeclare, QueueDeclare};
use super::routing::{validate_x_match, ExchangeKind, RoutingTable};
use super::snapshot::{Exchange, QueueDef, Snapshot, Vhost};
use super::users::{Access, ResourceKind};
use crate::broker::placement::queue_owner;
use crate::ids::{ConnId, Destination, ExchangeId, QueueId};
use crate::limits::{BINDINGS_PER_EXCHANGE_MAX, EXCHANGES_MAX, NAME_MAX_BYTES, QUEUES_MAX};

pub const DEFAULT_VHOST: &str = "/";

const PREDECLARED: &[(&str, ExchangeKind)] = &[
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
    // RabbitMQ's firehose tracer publishes here; clients may bind to it but not publish to it.
    (TRACE_EXCHANGE, ExchangeKind::Topic),
];

/// The default exchange and the `amq.*` ones: made with every vhost, never declared, stored
/// or exported.
pub(super) fn is_predeclared(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

/// Declared in every vhost, as RabbitMQ does; internal, so a publish to it is refused (403).
const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

/// A string argument (RabbitMQ's `r_arg`: other types are judged by the validators).
fn string_argument(arguments: &FieldTable, key: &str) -> Option<String> {
    match arguments.inner().get(key)? {
        amq_protocol::types::AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        amq_protocol::types::AMQPValue::ShortString(text) => Some(text.as_str().to_string()),
        _ => None,
    }
}

pub enum QueueDeclared {
    Created(Arc<QueueDef>),
    Existing(Arc<QueueDef>),
}

#[derive(Clone)]
pub struct Definitions {
    snapshot: Arc<Snapshot>,
    pub(super) shard_count: usize,
    pub(super) next_queue_sequence: u64,
    next_exchange_id: u64,
    pub(super) queue_count: usize,
    exchange_count: usize,
    changed: bool,
    name_seed: u64,
}

impl Definitions {
    /// Definitions with the defaults of a fresh data directory: vhost `/` and user `guest`
    /// with every permission on it.
    pub fn new(shard_count: usize) -> Definitions {
        let mut definitions = Definitions::empty(shard_count);
        definitions.seed(&super::accounts::Defaults::default()).expect("the defaults are valid");
        definitions
    }

    /// Definitions without any vhost or user (recovery replays the log into these).
    pub fn empty(shard_count: usize) -> Definitions {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |elapsed| elapsed.as_nanos() as u64)
            | 1;
        Definitions {
            snapshot: Arc::new(Snapshot::default()),
            shard_count,
            next_queue_sequence: 1,
            next_exchange_id: 1,
            queue_count: 0,
            exchange_count: 0,
            changed: true,
            name_seed: seed,
        }
    }

    /// The snapshot, to change: marks the definitions changed.
    pub(super) fn snapshot_mut(&mut self) -> &mut Snapshot {
        self.changed = true;
        Arc::make_mut(&mut self.snapshot)
    }

    /// Forgets queues and exchanges removed with their vhost.
    pub(super) fn forget_counts(&mut self, queues: usize, exchanges: usize) {
        self.queue_count = self.queue_count.saturating_sub(queues);
        self.exchange_count = self.exchange_count.saturating_sub(exchanges);
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// If anything changed since the last call, bumps the version and returns the snapshot to
    /// publish to every shard.
    pub fn take_changed(&mut self) -> Option<Arc<Snapshot>> {
        if !self.changed {
            return None;
        }
        self.changed = false;
        Arc::make_mut(&mut self.snapshot).version += 1;
        Some(self.snapshot.clone())
    }

    pub fn add_vhost(&mut self, name: &str) {
        let mut vhost = Vhost { name: name.to_string(), ..Vhost::default() };
        for (exchange_name, kind) in PREDECLARED {
            let id = self.new_exchange_id();
            let internal = *exchange_name == TRACE_EXCHANGE;
            let exchange = new_exchange(id, exchange_name, *kind, true, false, internal, FieldTable::default());
            vhost.exchange_names.insert(id, exchange_name.to_string());
            vhost.exchanges.insert(exchange_name.to_string(), Arc::new(exchange));
        }
        Arc::make_mut(&mut self.snapshot).vhosts.insert(name.to_string(), Arc::new(vhost));
        self.changed = true;
    }

    fn new_exchange_id(&mut self) -> ExchangeId {
        let id = ExchangeId(self.next_exchange_id);
        self.next_exchange_id += 1;
        id
    }

    pub(super) fn vhost(&self, name: &str) -> Result<&Arc<Vhost>, AmqpError> {
        self.snapshot
            .vhosts
            .get(name)
            .ok_or_else(|| AmqpError::new(super::error::NOT_FOUND, format!("no vhost '{name}'")))
    }

    pub(super) fn vhost_mut(&mut self, name: &str) -> Result<&mut Vhost, AmqpError> {
        self.changed = true;
        let vhosts = &mut Arc::make_mut(&mut self.snapshot).vhosts;
        let vhost = vhosts
            .get_mut(name)
            .ok_or_else(|| AmqpError::new(super::error::NOT_FOUND, format!("no vhost '{name}'")))?;
        Ok(Arc::make_mut(vhost))
    }

    /// exchange.declare, in RabbitMQ 3.10's order: passive (the default exchange refused,
    /// then existence); the type (503, a connection error), the default exchange (403),
    /// equivalence with an existing exchange, or, for a new one, its name and arguments.
    pub fn declare_exchange(&mut self, request: &ExchangeDeclare) -> Result<(), AmqpError> {
        let vhost_name = request.vhost.as_str();
        let existing = self.vhost(vhost_name)?.exchanges.get(&request.name).cloned();
        if request.passive {
            check_not_default_exchange(&request.name)?;
            return match existing {
                Some(_) => Ok(()),
                None => Err(AmqpError::not_found("exchange", &request.name, vhost_name)),
            };
        }
        let kind = ExchangeKind::parse(&request.kind).ok_or_else(|| unknown_exchange_type(&request.kind))?;
        check_not_default_exchange(&request.name)?;
        if let Some(exchange) = existing {
            return check_exchange_equivalence(&exchange, kind, request);
        }
        check_name("exchange", &request.name)?;
        if let (Some(grant), Some(alternate)) =
            (&request.grant, string_argument(&request.arguments, "alternate-exchange"))
        {
            grant.check(Access::Read, ResourceKind::Exchange, &request.name, vhost_name)?;
            grant.check(Access::Write, ResourceKind::Exchange, &alternate, vhost_name)?;
        }
        super::queue_args::validate_exchange(&request.arguments, &request.name, vhost_name)?;
        if kind == ExchangeKind::ConsistentHash {
            super::consistent_hash::validate_arguments(&request.arguments)?;
        }
        if kind == ExchangeKind::DelayedMessage {
            super::delayed::validate_arguments(&request.arguments)?;
        }
        if self.exchange_count >= EXCHANGES_MAX {
            return Err(AmqpError::new(RESOURCE_ERROR, "exchange limit reached"));
        }
        let id = self.new_exchange_id();
        let exchange = new_exchange(
            id,
            &request.name,
            kind,
            request.durable,
            request.auto_delete,
            request.internal,
            request.arguments.clone(),
        );
        let vhost = self.vhost_mut(vhost_name)?;
        let exchange = Exchange { policy: vhost.policies.for_exchange(&request.name), ..exchange };
        vhost.exchange_names.insert(id, request.name.clone());
        vhost.exchanges.insert(request.name.clone(), Arc::new(exchange));
        self.exchange_count += 1;
        Ok(())
    }

    pub fn delete_exchange(&mut self, vhost_name: &str, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        check_not_default_exchange(name)?;
        if name.starts_with("amq.") {
            return Err(AmqpError::new(
                ACCESS_REFUSED,
                format!("deletion of system exchange '{name}' in vhost '{vhost_name}' not allowed"),
            ));
        }
        let Some(exchange) = self.vhost(vhost_name)?.exchanges.get(name).cloned() else {
            return Ok(()); // deleting a missing exchange succeeds, as in RabbitMQ
        };
        if if_unused && exchange.table.has_bindings() {
            return Err(AmqpError::new(
                PRECONDITION_FAILED,
                format!("exchange '{name}' in vhost '{vhost_name}' in use"),
            ));
        }
        self.remove_exchange(vhost_name, exchange.id)
    }

    fn remove_exchange(&mut self, vhost_name: &str, id: ExchangeId) -> Result<(), AmqpError> {
        let vhost = self.vhost_mut(vhost_name)?;
        if let Some(name) = vhost.exchange_names.remove(&id) {
            vhost.exchanges.remove(&name);
            self.exchange_count = self.exchange_count.saturating_sub(1);
        }
        self.remove_destination(vhost_name, Destination::Exchange(id))
    }

    /// Removes every binding to `destination`, then auto-deletes exchanges left unbound.
    fn remove_destination(&mut self, vhost_name: &str, destination: Destination) -> Result<(), AmqpError> {
        let vhost = self.vhost_mut(vhost_name)?;
        let mut emptied = Vec::new();
        for exchange in vhost.exchanges.values_mut() {
            if exchange.table.bindings().any(|(bound, _, _)| bound == destination) {
                let exchange = Arc::make_mut(exchange);
                exchange.table.remove_destination(destination);
                if exchange.auto_delete && !exchange.table.has_bindings() {
                    emptied.push(exchange.id);
                }
            }
        }
        for id in emptied {
            self.remove_exchange(vhost_name, id)?;
        }
        Ok(())
    }

    /// queue.declare, in RabbitMQ 3.10's order. Passive: existence (404), then exclusivity
    /// (405). Otherwise: the reserved `amq.` prefix (403, even for a queue that exists), then
    /// for an existing queue exclusivity (405) and equivalence (406), for a new one the queue
    /// limit and the arguments (406). An exclusive queue is never durable.
    pub fn declare_queue(&mut self, request: &QueueDeclare) -> Result<QueueDeclared, AmqpError> {
        let vhost_name = request.vhost.as_str();
        let existing = self.vhost(vhost_name)?.queues.get(&request.name).cloned();
        if request.passive {
            let queue = existing.ok_or_else(|| AmqpError::not_found("queue", &request.name, vhost_name))?;
            check_exclusive_access(&queue, request.conn)?;
            return Ok(QueueDeclared::Existing(queue));
        }
        if request.name.is_empty() {
            super::queue_args::check_server_named(&request.arguments)?;
        } else {
            check_name("queue", &request.name)?;
        }
        let durable = request.durable && !request.exclusive;
        if let Some(queue) = existing {
            let owner = request.exclusive.then_some(request.conn);
            if queue.exclusive_owner != owner {
                return Err(AmqpError::exclusive_locked(&queue.name, &queue.vhost));
            }
            check_queue_equivalence(&queue, request, durable)?;
            return Ok(QueueDeclared::Existing(queue));
        }
        if self.queue_count >= QUEUES_MAX {
            return Err(AmqpError::new(RESOURCE_ERROR, "queue limit reached"));
        }
        if let Some(limit) = self.vhost(vhost_name)?.limits.max_queues {
            if self.vhost(vhost_name)?.queues.len() >= limit as usize {
                let text = format!(
                    "cannot declare queue '{}': queue limit in vhost '{vhost_name}' ({limit}) is reached",
                    request.name
                );
                return Err(AmqpError::new(PRECONDITION_FAILED, text));
            }
        }
        let name = if request.name.is_empty() { self.server_named_queue() } else { request.name.clone() };
        if let Some(grant) = &request.grant {
            if request.name.is_empty() {
                grant.check(Access::Configure, ResourceKind::Queue, &name, vhost_name)?;
            }
            if let Some(dead_letter) = string_argument(&request.arguments, "x-dead-letter-exchange") {
                grant.check(Access::Read, ResourceKind::Queue, &name, vhost_name)?;
                grant.check(Access::Write, ResourceKind::Exchange, &dead_letter, vhost_name)?;
            }
        }
        super::queue_args::validate(&request.arguments, &name, vhost_name)?;
        let flags = QueueFlags { durable, exclusive: request.exclusive, auto_delete: request.auto_delete };
        super::queue_args::check_flags(&request.arguments, flags, &name, vhost_name)?;
        let owner = if request.exclusive || request.name.is_empty() {
            request.conn.shard()
        } else {
            queue_owner(vhost_name, &name, self.shard_count)
        };
        let definition = Arc::new(QueueDef {
            id: QueueId::new(owner, self.next_queue_sequence),
            vhost: vhost_name.to_string(),
            name: name.clone(),
            durable,
            exclusive_owner: request.exclusive.then_some(request.conn),
            auto_delete: request.auto_delete,
            arguments: request.arguments.clone(),
            policies: self.vhost(vhost_name)?.policies.for_queue(&name),
        });
        self.next_queue_sequence += 1;
        self.queue_count += 1;
        self.vhost_mut(vhost_name)?.queues.insert(name, definition.clone());
        Ok(QueueDeclared::Created(definition))
    }

    /// Finds a queue for queue.delete; a missing queue is not an error (RabbitMQ answers
    /// delete-ok with a count of 0).
    pub fn queue_for_delete(
        &self,
        vhost_name: &str,
        name: &str,
        conn: ConnId,
    ) -> Result<Option<Arc<QueueDef>>, AmqpError> {
        match self.vhost(vhost_name)?.queues.get(name) {
            None => Ok(None),
            Some(queue) => {
                check_exclusive_access(queue, conn)?;
                Ok(Some(queue.clone()))
            }
        }
    }

    /// Forgets a queue its owner has deleted, with its bindings.
    pub fn remove_queue(&mut self, vhost_name: &str, id: QueueId) -> Result<(), AmqpError> {
        let vhost = self.vhost_mut(vhost_name)?;
        let name = vhost.queues.values().find(|queue| queue.id == id).map(|queue| queue.name.clone());
        if let Some(name) = name {
            vhost.queues.remove(&name);
            self.queue_count = self.queue_count.saturating_sub(1);
        }
        self.remove_destination(vhost_name, Destination::Queue(id))
    }

    /// Removes the exclusive queues of `conn` from the definitions and returns them (their
    /// owners must drop their state).
    pub fn release_exclusive(&mut self, conn: ConnId) -> Vec<Arc<QueueDef>> {
        let released = self.exclusive_queues_of(conn);
        for queue in &released {
            if let Err(error) = self.remove_queue(&queue.vhost, queue.id) {
                crate::warn!("releasing exclusive queue '{}': {}", queue.name, error.reply_text);
            }
        }
        released
    }

    pub fn exclusive_queues_of(&self, conn: ConnId) -> Vec<Arc<QueueDef>> {
        self.snapshot
            .vhosts
            .values()
            .flat_map(|vhost| vhost.queues.values())
            .filter(|queue| queue.exclusive_owner == Some(conn))
            .cloned()
            .collect()
    }

    /// queue.bind and exchange.bind, in RabbitMQ 3.10's order: the default exchange at either
    /// end (403), the source then the destination (404), `x-match` of a headers source (406),
    /// the queue's exclusivity (405). Binding twice is binding once.
    pub fn bind(&mut self, binding: &Binding) -> Result<(), AmqpError> {
        check_binding_ends(binding)?;
        let (source, destination) = self.resolve_binding(binding)?.map_err(|missing| missing.error(binding))?;
        if source.table.is_headers() {
            validate_x_match(&binding.arguments).map_err(|text| AmqpError::new(PRECONDITION_FAILED, text))?;
        }
        if source.table.hash_ring().is_some() {
            super::consistent_hash::weight(&binding.routing_key)
                .map_err(|text| AmqpError::new(PRECONDITION_FAILED, text))?;
        }
        self.check_exclusive_destination(binding)?;
        if source.table.bindings().count() >= BINDINGS_PER_EXCHANGE_MAX {
            return Err(AmqpError::new(RESOURCE_ERROR, "binding limit reached"));
        }
        let vhost = self.vhost_mut(&binding.vhost)?;
        if let Some(exchange) = vhost.exchanges.get_mut(&binding.source) {
            Arc::make_mut(exchange).table.bind(destination, &binding.routing_key, &binding.arguments);
        }
        Ok(())
    }

    /// queue.unbind and exchange.unbind: the default exchange at either end is 403; a missing
    /// source, destination or binding is nothing to do (RabbitMQ answers unbind-ok); only a
    /// binding that exists is checked for the queue's exclusivity (405) and removed. A source
    /// left without bindings goes if it is auto-delete.
    pub fn unbind(&mut self, binding: &Binding) -> Result<(), AmqpError> {
        check_binding_ends(binding)?;
        let Ok((source, destination)) = self.resolve_binding(binding)? else {
            return Ok(());
        };
        if !source.table.contains(destination, &binding.routing_key, &binding.arguments) {
            return Ok(());
        }
        self.check_exclusive_destination(binding)?;
        let vhost = self.vhost_mut(&binding.vhost)?;
        let mut emptied = None;
        if let Some(exchange) = vhost.exchanges.get_mut(&binding.source) {
            let exchange = Arc::make_mut(exchange);
            if exchange.table.unbind(destination, &binding.routing_key, &binding.arguments)
                && exchange.auto_delete
                && !exchange.table.has_bindings()
            {
                emptied = Some(source.id);
            }
        }
        if let Some(id) = emptied {
            self.remove_exchange(&binding.vhost, id)?;
        }
        Ok(())
    }

    /// The source exchange and the destination of a binding; the inner error says which end
    /// is missing, the source first (RabbitMQ names the source when both are).
    fn resolve_binding(&self, binding: &Binding) -> Result<Result<(Arc<Exchange>, Destination), Missing>, AmqpError> {
        let vhost = self.vhost(&binding.vhost)?;
        let Some(source) = vhost.exchanges.get(&binding.source) else {
            return Ok(Err(Missing::Source));
        };
        let destination = if binding.destination_is_queue {
            vhost.queues.get(&binding.destination).map(|queue| Destination::Queue(queue.id))
        } else {
            vhost.exchanges.get(&binding.destination).map(|exchange| Destination::Exchange(exchange.id))
        };
        Ok(destination.map(|destination| (source.clone(), destination)).ok_or(Missing::Destination))
    }

    /// A queue destination of another connection's exclusive queue is 405.
    fn check_exclusive_destination(&self, binding: &Binding) -> Result<(), AmqpError> {
        if !binding.destination_is_queue {
            return Ok(());
        }
        match self.vhost(&binding.vhost)?.queues.get(&binding.destination) {
            Some(queue) => check_exclusive_access(queue, binding.conn),
            None => Ok(()),
        }
    }

    /// `amq.gen-` and 22 url-safe characters, as RabbitMQ names server-named queues.
    fn server_named_queue(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut name = String::from("amq.gen-");
        for _ in 0..22 {
            self.name_seed ^= self.name_seed << 13;
            self.name_seed ^= self.name_seed >> 7;
            self.name_seed ^= self.name_seed << 17;
            name.push(char::from(ALPHABET[(self.name_seed % 64) as usize]));
        }
        name
    }
}

fn new_exchange(
    id: ExchangeId,
    name: &str,
    kind: ExchangeKind,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    arguments: FieldTable,
) -> Exchange {
    Exchange {
        id,
        name: name.to_string(),
        kind,
        durable,
        auto_delete,
        internal,
        table: RoutingTable::with_arguments(kind, &arguments),
        arguments,
        policy: None,
    }
}

fn check_name(kind: &str, name: &str) -> Result<(), AmqpError> {
    if name.starts_with("amq.") {
        return Err(AmqpError::reserved_name(kind, name));
    }
    if name.len() > NAME_MAX_BYTES {
        return Err(AmqpError::new(PRECONDITION_FAILED, format!("{kind} name too long")));
    }
    Ok(())
}

fn check_exclusive_access(queue: &QueueDef, conn: ConnId) -> Result<(), AmqpError> {
    match queue.exclusive_owner {
        Some(owner) if owner != conn => Err(AmqpError::exclusive_locked(&queue.name, &queue.vhost)),
        _ => Ok(()),
    }
}

/// Which end of a binding does not exist.
enum Missing {
    Source,
    Destination,
}

impl Missing {
    fn error(self, binding: &Binding) -> AmqpError {
        match (self, binding.destination_is_queue) {
            (Missing::Source, _) => AmqpError::not_found("exchange", &binding.source, &binding.vhost),
            (Missing::Destination, true) => AmqpError::not_found("queue", &binding.destination, &binding.vhost),
            (Missing::Destination, false) => AmqpError::not_found("exchange", &binding.destination, &binding.vhost),
        }
    }
}

/// RabbitMQ refuses the default exchange at either end of a binding, the destination first,
/// before it looks either up.
fn check_binding_ends(binding: &Binding) -> Result<(), AmqpError> {
    if !binding.destination_is_queue {
        check_not_default_exchange(&binding.destination)?;
    }
    check_not_default_exchange(&binding.source)
}

fn check_not_default_exchange(name: &str) -> Result<(), AmqpError> {
    if name.is_empty() {
        return Err(AmqpError::new(ACCESS_REFUSED, "operation not permitted on the default exchange"));
    }
    Ok(())
}

/// RabbitMQ names an empty type invalid and any other it does not know unknown.
fn unknown_exchange_type(kind: &str) -> AmqpError {
    let text = if kind.is_empty() {
        "invalid exchange type ''".to_string()
    } else {
        format!("unknown exchange type '{kind}'")
    };
    AmqpError::new(COMMAND_INVALID, text)
}
