//! Which definition changes are durable, how they are replayed at start, and the compact form
//! of the current durable state.
//!
//! Durable means what RabbitMQ keeps across a restart: durable exchanges (other than the
//! predeclared ones), durable queues that are not exclusive, and bindings whose source and
//! destination are both durable. Replay goes through the same methods clients use, so side
//! effects (auto-delete of exchanges, binding removal) come out the same.

use std::collections::HashSet;
use std::sync::Arc;

use super::accounts::Defaults;
use super::definitions::{is_predeclared, Definitions};
use super::error::AmqpError;
use super::passwords::{HashAlgorithm, PasswordHash};
use super::policy::{Policy, PolicyInput, PolicyKind};
use super::requests::{Binding, ExchangeDeclare};
use super::snapshot::{QueueDef, Vhost};
use super::users::{Permissions, User, UserLimits, VhostLimits};
use crate::broker::placement::queue_owner;
use crate::ids::{ConnId, Destination, QueueId};
use crate::store::definitions_log::{BindingDefinition, DefinitionOp};

/// The connection replayed definitions are attributed to (never a real client).
const REPLAY_CONN: ConnId = ConnId { shard: 0, local: 0 };

pub fn queue_is_durable(queue: &QueueDef) -> bool {
    queue.durable && queue.exclusive_owner.is_none()
}

impl Definitions {
    pub fn exchange_is_durable(&self, vhost: &str, name: &str) -> bool {
        self.vhost(vhost).ok().and_then(|found| found.exchanges.get(name)).is_some_and(|exchange| exchange.durable)
    }

    /// The log entry for a binding change, if both ends are durable.
    pub fn durable_binding(&self, binding: &Binding) -> Option<BindingDefinition> {
        let vhost = self.vhost(&binding.vhost).ok()?;
        let destination_durable = if binding.destination_is_queue {
            vhost.queues.get(&binding.destination).is_some_and(|queue| queue_is_durable(queue))
        } else {
            vhost.exchanges.get(&binding.destination).is_some_and(|exchange| exchange.durable)
        };
        let source_durable = vhost.exchanges.get(&binding.source).is_some_and(|exchange| exchange.durable);
        (source_durable && destination_durable).then(|| BindingDefinition {
            vhost: binding.vhost.clone(),
            source: binding.source.clone(),
            destination: binding.destination.clone(),
            destination_is_queue: binding.destination_is_queue,
            routing_key: binding.routing_key.clone(),
            arguments: binding.arguments.clone(),
        })
    }

    pub fn queue_by_id(&self, vhost: &str, id: QueueId) -> Option<Arc<QueueDef>> {
        self.vhost(vhost).ok()?.queues.values().find(|queue| queue.id == id).cloned()
    }

    /// Sequences of the durable queues, which recovery keeps messages for.
    pub fn durable_queue_sequences(&self) -> HashSet<u64> {
        self.all_queues().filter(|queue| queue_is_durable(queue)).map(|queue| queue.id.sequence()).collect()
    }

    pub fn all_queues(&self) -> impl Iterator<Item = &Arc<QueueDef>> {
        self.snapshot().vhosts.values().flat_map(|vhost| vhost.queues.values())
    }

    /// The definitions a data directory's log holds. A log that never recorded the defaults
    /// (a fresh data directory, or one written before users and vhosts were stored) gets
    /// them first; its queues, if any, live in vhost `/`.
    pub fn from_log(
        shard_count: usize,
        operations: &[DefinitionOp],
        defaults: &Defaults,
    ) -> Result<Definitions, String> {
        let mut definitions = Definitions::empty(shard_count);
        if !operations.iter().any(|operation| matches!(operation, DefinitionOp::Seeded)) {
            if !operations.is_empty() && defaults.vhost != super::definitions::DEFAULT_VHOST {
                definitions.add_vhost(super::definitions::DEFAULT_VHOST);
            }
            definitions.seed(defaults)?;
        }
        definitions.replay(operations);
        Ok(definitions)
    }

    /// Applies logged operations in order. An operation that no longer applies is skipped
    /// with a log line: the log is history, and history may hold what was undone later.
    pub fn replay(&mut self, operations: &[DefinitionOp]) {
        for operation in operations {
            if let Err(error) = self.replay_one(operation) {
                crate::warn!("definitions replay: {operation:?} skipped: {}", error.reply_text);
            }
        }
    }

    fn replay_one(&mut self, operation: &DefinitionOp) -> Result<(), AmqpError> {
        match operation {
            DefinitionOp::ExchangeDeclare { vhost, name, kind, auto_delete, internal, arguments } => self
                .declare_exchange(&ExchangeDeclare {
                    vhost: vhost.clone(),
                    name: name.clone(),
                    kind: kind.clone(),
                    passive: false,
                    durable: true,
                    auto_delete: *auto_delete,
                    internal: *internal,
                    arguments: arguments.clone(),
                    grant: None,
                }),
            DefinitionOp::ExchangeDelete { vhost, name } => self.delete_exchange(vhost, name, false),
            DefinitionOp::QueueDeclare { vhost, name, sequence, auto_delete, arguments } => {
                let owner = queue_owner(vhost, name, self.shard_count);
                let definition = QueueDef {
                    id: QueueId::new(owner, *sequence),
                    vhost: vhost.clone(),
                    name: name.clone(),
                    durable: true,
                    exclusive_owner: None,
                    auto_delete: *auto_delete,
                    arguments: arguments.clone(),
                    policies: self.vhost(vhost)?.policies.for_queue(name),
                };
                self.next_queue_sequence = self.next_queue_sequence.max(sequence + 1);
                self.queue_count += 1;
                self.vhost_mut(vhost)?.queues.insert(name.clone(), Arc::new(definition));
                Ok(())
            }
            DefinitionOp::QueueDelete { vhost, name } => {
                let id = self.vhost(vhost)?.queues.get(name).map(|queue| queue.id);
                match id {
                    Some(id) => self.remove_queue(vhost, id),
                    None => Ok(()),
                }
            }
            DefinitionOp::Bind(binding) => self.bind(&binding_request(binding)),
            DefinitionOp::Unbind(binding) => self.unbind(&binding_request(binding)),
            DefinitionOp::Seeded => Ok(()),
            DefinitionOp::VhostAdd { name } => {
                if self.snapshot().vhost(name).is_none() {
                    self.add_vhost(name);
                }
                Ok(())
            }
            DefinitionOp::VhostDelete { name } => self.delete_vhost(name).map(drop).map_err(replay_error),
            DefinitionOp::UserPut { name, hashing_algorithm, password_hash, tags } => {
                let user = user_from_log(name, hashing_algorithm, password_hash, tags).map_err(replay_error)?;
                self.put_user(user);
                Ok(())
            }
            DefinitionOp::UserDelete { name } => self.delete_user(name).map_err(replay_error),
            DefinitionOp::PermissionSet { user, vhost, configure, write, read } => {
                let permissions = Permissions::new(configure, write, read).map_err(replay_error)?;
                self.set_permissions(user, vhost, permissions).map_err(replay_error)
            }
            DefinitionOp::PermissionClear { user, vhost } => self.clear_permissions(user, vhost).map_err(replay_error),
            DefinitionOp::VhostLimits { name, max_connections, max_queues } => {
                let limits =
                    VhostLimits { max_connections: limit_of(*max_connections), max_queues: limit_of(*max_queues) };
                self.set_vhost_limits(name, limits).map_err(replay_error)
            }
            DefinitionOp::UserLimits { name, max_connections } => {
                let limits = UserLimits { max_connections: limit_of(*max_connections) };
                self.set_user_limits(name, limits).map_err(replay_error)
            }
            DefinitionOp::PolicySet { operator, vhost, name, pattern, apply_to, definition, priority } => {
                let definition = super::policy::parse_definition(definition).map_err(replay_error)?;
                let policy = Policy::parse(&PolicyInput {
                    kind: policy_kind(*operator),
                    vhost,
                    name,
                    pattern,
                    apply_to,
                    definition: &definition,
                    priority: *priority,
                })
                .map_err(replay_error)?;
                self.set_policy(policy).map_err(replay_error)
            }
            DefinitionOp::PolicyClear { operator, vhost, name } => {
                self.clear_policy(policy_kind(*operator), vhost, name).map_err(replay_error)
            }
        }
    }

    /// The durable state as a minimal list of operations (for compaction).
    pub fn durable_operations(&self) -> Vec<DefinitionOp> {
        let mut accounts = vec![DefinitionOp::Seeded];
        let mut vhosts: Vec<&Arc<Vhost>> = self.snapshot().vhosts.values().collect();
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        for vhost in vhosts {
            accounts.push(DefinitionOp::VhostAdd { name: vhost.name.clone() });
            if vhost.limits != VhostLimits::default() {
                accounts.push(vhost_limits_operation(&vhost.name, vhost.limits));
            }
        }
        let mut users: Vec<&Arc<User>> = self.snapshot().users.values().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        for user in &users {
            accounts.push(user_operation(user));
            if user.limits != UserLimits::default() {
                accounts.push(user_limits_operation(&user.name, user.limits));
            }
        }
        for user in users {
            let mut vhosts: Vec<_> = user.permissions.iter().collect();
            vhosts.sort_by(|a, b| a.0.cmp(b.0));
            for (vhost, permissions) in vhosts {
                accounts.push(permission_operation(&user.name, vhost, permissions));
            }
        }
        let mut vhosts: Vec<&Arc<Vhost>> = self.snapshot().vhosts.values().collect();
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        for vhost in vhosts {
            for kind in [PolicyKind::Policy, PolicyKind::Operator] {
                accounts.extend(vhost.policies.list(kind).iter().map(|policy| policy_operation(policy)));
            }
        }
        let mut exchanges = Vec::new();
        let mut queues = Vec::new();
        let mut bindings = Vec::new();
        for vhost in self.snapshot().vhosts.values() {
            for exchange in vhost.exchanges.values() {
                if exchange.durable && !is_predeclared(&exchange.name) {
                    exchanges.push(DefinitionOp::ExchangeDeclare {
                        vhost: vhost.name.clone(),
                        name: exchange.name.clone(),
                        kind: exchange.kind.as_str().to_string(),
                        auto_delete: exchange.auto_delete,
                        internal: exchange.internal,
                        arguments: exchange.arguments.clone(),
                    });
                }
            }
            for queue in vhost.queues.values().filter(|queue| queue_is_durable(queue)) {
                queues.push(DefinitionOp::QueueDeclare {
                    vhost: vhost.name.clone(),
                    name: queue.name.clone(),
                    sequence: queue.id.sequence(),
                    auto_delete: queue.auto_delete,
                    arguments: queue.arguments.clone(),
                });
            }
            durable_bindings(vhost, &mut bindings);
        }
        accounts.into_iter().chain(exchanges).chain(queues).chain(bindings).collect()
    }
}

fn durable_bindings(vhost: &Vhost, out: &mut Vec<DefinitionOp>) {
    for exchange in vhost.exchanges.values().filter(|exchange| exchange.durable && !exchange.name.is_empty()) {
        for (destination, routing_key, arguments) in exchange.table.bindings() {
            let (name, is_queue, durable) = match destination {
                Destination::Queue(id) => match vhost.queues.values().find(|queue| queue.id == id) {
                    Some(queue) => (queue.name.clone(), true, queue_is_durable(queue)),
                    None => continue,
                },
                Destination::Exchange(id) => match vhost.exchange_by_id(id) {
                    Some(target) => (target.name.clone(), false, target.durable),
                    None => continue,
                },
            };
            if durable {
                out.push(DefinitionOp::Bind(BindingDefinition {
                    vhost: vhost.name.clone(),
                    source: exchange.name.clone(),
                    destination: name,
                    destination_is_queue: is_queue,
                    routing_key: routing_key.to_string(),
                    arguments: arguments.clone(),
                }));
            }
        }
    }
}

/// A stored limit: negative is none.
fn limit_of(stored: i64) -> Option<u32> {
    u32::try_from(stored).ok()
}

fn stored_limit(limit: Option<u32>) -> i64 {
    limit.map_or(-1, i64::from)
}

pub fn vhost_limits_operation(name: &str, limits: VhostLimits) -> DefinitionOp {
    DefinitionOp::VhostLimits {
        name: name.to_string(),
        max_connections: stored_limit(limits.max_connections),
        max_queues: stored_limit(limits.max_queues),
    }
}

pub fn user_limits_operation(name: &str, limits: UserLimits) -> DefinitionOp {
    DefinitionOp::UserLimits { name: name.to_string(), max_connections: stored_limit(limits.max_connections) }
}

/// The log entry that creates or replaces `policy`.
pub fn policy_operation(policy: &Policy) -> DefinitionOp {
    DefinitionOp::PolicySet {
        operator: policy.kind == PolicyKind::Operator,
        vhost: policy.vhost.clone(),
        name: policy.name.clone(),
        pattern: policy.pattern.clone(),
        apply_to: policy.apply_to.as_str().to_string(),
        definition: policy.definition_json(),
        priority: policy.priority,
    }
}

fn policy_kind(operator: bool) -> PolicyKind {
    if operator {
        PolicyKind::Operator
    } else {
        PolicyKind::Policy
    }
}

fn replay_error(text: String) -> AmqpError {
    AmqpError::new(super::error::INTERNAL_ERROR, text)
}

/// The log entry that creates or replaces `user` (not its permissions).
pub fn user_operation(user: &User) -> DefinitionOp {
    DefinitionOp::UserPut {
        name: user.name.clone(),
        hashing_algorithm: user.password.algorithm().rabbit_name().to_string(),
        password_hash: user.password.to_base64(),
        tags: user.tags.clone(),
    }
}

pub fn permission_operation(user: &str, vhost: &str, permissions: &Permissions) -> DefinitionOp {
    DefinitionOp::PermissionSet {
        user: user.to_string(),
        vhost: vhost.to_string(),
        configure: permissions.configure.source().to_string(),
        write: permissions.write.source().to_string(),
        read: permissions.read.source().to_string(),
    }
}

fn user_from_log(name: &str, algorithm: &str, hash: &str, tags: &[String]) -> Result<User, String> {
    let algorithm = HashAlgorithm::from_rabbit_name(algorithm)
        .ok_or_else(|| format!("unknown password hashing algorithm '{algorithm}'"))?;
    let password = if hash.is_empty() { PasswordHash::none() } else { PasswordHash::from_base64(algorithm, hash)? };
    Ok(User::new(name, password, tags.to_vec()))
}

fn binding_request(binding: &BindingDefinition) -> Binding {
    Binding {
        vhost: binding.vhost.clone(),
        source: binding.source.clone(),
        destination: binding.destination.clone(),
        destination_is_queue: binding.destination_is_queue,
        routing_key: binding.routing_key.clone(),
        arguments: binding.arguments.clone(),
        conn: REPLAY_CONN,
    }
}
