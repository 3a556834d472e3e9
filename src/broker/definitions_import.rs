//! RabbitMQ definitions files in and out of the broker's definitions: `--definitions FILE` at
//! boot, `spatemq ctl import_definitions` / `export_definitions` at run time.
//!
//! An import is all or nothing: it is applied to a copy of the definitions, and only a copy
//! that took every item replaces the live one (the caller then rewrites the definitions log in
//! one atomic compaction). Items that already exist are kept as they are, as RabbitMQ's import
//! keeps them; users are created or updated (hash and tags), policies set (replacing one of
//! the same name). The export holds what RabbitMQ's holds: users, vhosts, permissions,
//! policies, operator policies (as `operator_policy` parameters), exchanges, queues other than
//! exclusive ones, bindings.

use std::sync::Arc;

use super::definitions::is_predeclared;
use super::definitions::{Definitions, QueueDeclared};
use super::definitions_file::{self as file, DefinitionsFile, DestinationType};
use super::policy::{Policy, PolicyInput, PolicyKind};
use super::queue_args::QueueType;
use super::requests::{Binding, ExchangeDeclare, QueueDeclare};
use super::snapshot::{QueueDef, Snapshot};
use super::users::{Permissions, User, UserLimits, VhostLimits};
use crate::ids::{ConnId, Destination};

/// The connection imported definitions are attributed to (never a real client).
const IMPORT_CONN: ConnId = ConnId { shard: 0, local: 0 };

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    /// Queues created: their owners must create their state.
    pub created_queues: Vec<Arc<QueueDef>>,
    /// Items kept as they were, and what the file held that this broker does not use.
    pub warnings: Vec<String>,
}

impl Definitions {
    /// Applies `file` to a copy; the copy replaces these definitions only if every item
    /// applied. The error names the first item that did not.
    pub fn import(&mut self, file: &DefinitionsFile) -> Result<Imported, String> {
        let mut copy = self.clone();
        let imported = copy.import_into(file)?;
        *self = copy;
        Ok(imported)
    }

    fn import_into(&mut self, file: &DefinitionsFile) -> Result<Imported, String> {
        let mut imported = Imported::default();
        for vhost in &file.vhosts {
            if self.snapshot().vhost(&vhost.name).is_none() {
                self.create_vhost(&vhost.name).map_err(|why| format!("vhost '{}': {why}", vhost.name))?;
            }
        }
        for vhost in &file.vhosts {
            let limits =
                vhost_limits(vhost.limits.iter().map(|(key, value)| (key.as_str(), *value)), &mut imported.warnings);
            if limits != VhostLimits::default() {
                self.set_vhost_limits(&vhost.name, limits).map_err(|why| format!("vhost '{}': {why}", vhost.name))?;
            }
        }
        // RabbitMQ keeps vhost limits as the parameter `vhost-limits`; its import reads them there.
        for parameter in file.parameters.iter().filter(|parameter| parameter.component == "vhost-limits") {
            let Some(object) = parameter.value.as_object() else { continue };
            let pairs = object.iter().filter_map(|(key, value)| Some((key.as_str(), value.as_i64()?)));
            let limits = vhost_limits(pairs, &mut imported.warnings);
            self.set_vhost_limits(&parameter.vhost, limits)
                .map_err(|why| format!("limits of vhost '{}': {why}", parameter.vhost))?;
        }
        for user in &file.users {
            let password = user.password_hash().map_err(|why| format!("user '{}': {why}", user.name))?;
            if user.name.is_empty() {
                return Err("a user has an empty name".into());
            }
            self.put_user(User::new(&user.name, password, user.tags.clone()));
            let mut limits = UserLimits::default();
            for (key, value) in &user.limits {
                match key.as_str() {
                    "max-connections" => limits.max_connections = u32::try_from(*value).ok(),
                    other => {
                        imported.warnings.push(format!("user '{}': limit '{other}' ignored: not supported", user.name))
                    }
                }
            }
            self.set_user_limits(&user.name, limits).map_err(|why| format!("user '{}': {why}", user.name))?;
        }
        for permission in &file.permissions {
            let what = format!("permissions of user '{}' in vhost '{}'", permission.user, permission.vhost);
            let permissions = Permissions::new(&permission.configure, &permission.write, &permission.read)
                .map_err(|why| format!("{what}: {why}"))?;
            self.set_permissions(&permission.user, &permission.vhost, permissions)
                .map_err(|why| format!("{what}: {why}"))?;
        }
        self.import_policies(file)?;
        for exchange in &file.exchanges {
            let exists = self
                .snapshot()
                .vhost(&exchange.vhost)
                .is_some_and(|vhost| vhost.exchanges.contains_key(&exchange.name));
            if exists {
                imported
                    .warnings
                    .push(format!("exchange '{}' in vhost '{}' exists: kept as it is", exchange.name, exchange.vhost));
                continue;
            }
            self.declare_exchange(&ExchangeDeclare {
                vhost: exchange.vhost.clone(),
                name: exchange.name.clone(),
                kind: exchange.exchange_type.clone(),
                passive: false,
                durable: exchange.durable,
                auto_delete: exchange.auto_delete,
                internal: exchange.internal,
                arguments: exchange.arguments.clone(),
                grant: None,
            })
            .map_err(|error| {
                format!("exchange '{}' in vhost '{}': {}", exchange.name, exchange.vhost, error.reply_text)
            })?;
        }
        for queue in &file.queues {
            let exists =
                self.snapshot().vhost(&queue.vhost).is_some_and(|vhost| vhost.queues.contains_key(&queue.name));
            if exists {
                imported
                    .warnings
                    .push(format!("queue '{}' in vhost '{}' exists: kept as it is", queue.name, queue.vhost));
                continue;
            }
            let declared = self
                .declare_queue(&QueueDeclare {
                    vhost: queue.vhost.clone(),
                    name: queue.name.clone(),
                    passive: false,
                    durable: queue.durable,
                    exclusive: false,
                    auto_delete: queue.auto_delete,
                    arguments: queue.arguments.clone(),
                    conn: IMPORT_CONN,
                    grant: None,
                })
                .map_err(|error| format!("queue '{}' in vhost '{}': {}", queue.name, queue.vhost, error.reply_text))?;
            if let QueueDeclared::Created(definition) = declared {
                imported.created_queues.push(definition);
            }
        }
        for binding in &file.bindings {
            let bound = self.bind(&Binding {
                vhost: binding.vhost.clone(),
                source: binding.source.clone(),
                destination: binding.destination.clone(),
                destination_is_queue: binding.destination_type == DestinationType::Queue,
                routing_key: binding.routing_key.clone(),
                arguments: binding.arguments.clone(),
                conn: IMPORT_CONN,
            });
            let what = format!(
                "binding of {} '{}' to exchange '{}' in vhost '{}'",
                binding.destination_type.as_str(),
                binding.destination,
                binding.source,
                binding.vhost
            );
            match bound {
                Ok(()) => {}
                // RabbitMQ exports the bindings of internal exchanges it does not export
                // itself: such a binding is left out, as RabbitMQ's import leaves it out.
                Err(error) if error.reply_code == super::error::NOT_FOUND => {
                    imported.warnings.push(format!("{what} skipped: {}", error.reply_text));
                }
                Err(error) => return Err(format!("{what}: {}", error.reply_text)),
            }
        }
        let other_parameters = file
            .parameters
            .iter()
            .filter(|parameter| !matches!(parameter.component.as_str(), "vhost-limits" | OPERATOR_POLICY_COMPONENT))
            .count();
        for (count, what) in [
            (other_parameters, "parameters"),
            (file.global_parameters.len(), "global parameters"),
            (file.topic_permissions.len(), "topic permissions"),
        ] {
            if count > 0 {
                imported.warnings.push(format!("{count} {what} ignored: not supported yet"));
            }
        }
        Ok(imported)
    }
}

/// RabbitMQ keeps operator policies as runtime parameters of this component; its exports
/// carry them in `parameters`.
const OPERATOR_POLICY_COMPONENT: &str = "operator_policy";

impl Definitions {
    /// The file's policies, and its operator policies (parameters of component
    /// `operator_policy`): each is created or replaces the one of its name, as RabbitMQ's
    /// import sets them.
    fn import_policies(&mut self, file: &DefinitionsFile) -> Result<(), String> {
        for policy in &file.policies {
            let input = PolicyInput {
                kind: PolicyKind::Policy,
                vhost: &policy.vhost,
                name: &policy.name,
                pattern: &policy.pattern,
                apply_to: &policy.apply_to,
                definition: &policy.definition,
                priority: policy.priority,
            };
            let what = format!("policy '{}' in vhost '{}'", policy.name, policy.vhost);
            let parsed = Policy::parse(&input).map_err(|why| format!("{what}: {why}"))?;
            self.set_policy(parsed).map_err(|why| format!("{what}: {why}"))?;
        }
        for parameter in file.parameters.iter().filter(|parameter| parameter.component == OPERATOR_POLICY_COMPONENT) {
            let what = format!("operator policy '{}' in vhost '{}'", parameter.name, parameter.vhost);
            let value = &parameter.value;
            let empty = serde_json::Map::new();
            let input = PolicyInput {
                kind: PolicyKind::Operator,
                vhost: &parameter.vhost,
                name: &parameter.name,
                pattern: value["pattern"].as_str().ok_or_else(|| format!("{what}: pattern is missing"))?,
                apply_to: value["apply-to"].as_str().unwrap_or("all"),
                definition: value["definition"].as_object().unwrap_or(&empty),
                priority: value["priority"].as_i64().unwrap_or(0),
            };
            let parsed = Policy::parse(&input).map_err(|why| format!("{what}: {why}"))?;
            self.set_policy(parsed).map_err(|why| format!("{what}: {why}"))?;
        }
        Ok(())
    }
}

/// A vhost's policies as the file holds them: policies in `policies`, operator policies as
/// parameters.
fn export_policies(vhost: &super::snapshot::Vhost, out: &mut DefinitionsFile) {
    for policy in vhost.policies.list(PolicyKind::Policy) {
        out.policies.push(file::Policy {
            vhost: vhost.name.clone(),
            name: policy.name.clone(),
            pattern: policy.pattern.clone(),
            apply_to: policy.apply_to.as_str().to_string(),
            definition: policy.definition.clone(),
            priority: policy.priority,
        });
    }
    for policy in vhost.policies.list(PolicyKind::Operator) {
        out.parameters.push(file::Parameter {
            vhost: vhost.name.clone(),
            component: OPERATOR_POLICY_COMPONENT.into(),
            name: policy.name.clone(),
            value: serde_json::json!({
                "pattern": policy.pattern,
                "definition": policy.definition,
                "priority": policy.priority,
                "apply-to": policy.apply_to.as_str(),
            }),
        });
    }
}

/// RabbitMQ's vhost limits from `(key, value)` pairs; a negative value is no limit.
fn vhost_limits<'a>(pairs: impl Iterator<Item = (&'a str, i64)>, warnings: &mut Vec<String>) -> VhostLimits {
    let mut limits = VhostLimits::default();
    for (key, value) in pairs {
        match key {
            "max-connections" => limits.max_connections = u32::try_from(value).ok(),
            "max-queues" => limits.max_queues = u32::try_from(value).ok(),
            other => warnings.push(format!("vhost limit '{other}' ignored: not supported")),
        }
    }
    limits
}

/// The definitions of `snapshot` as a RabbitMQ definitions file.
pub fn export(snapshot: &Snapshot) -> DefinitionsFile {
    let mut out = DefinitionsFile::default();
    let mut users: Vec<_> = snapshot.users.values().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    for user in users {
        let mut limits = file::Limits::new();
        if let Some(max) = user.limits.max_connections {
            limits.insert("max-connections".into(), i64::from(max));
        }
        out.users.push(file::User::with_hash(&user.name, &user.password, user.tags.clone(), limits));
        let mut permissions: Vec<_> = user.permissions.iter().collect();
        permissions.sort_by(|a, b| a.0.cmp(b.0));
        for (vhost, permissions) in permissions {
            out.permissions.push(file::Permission {
                user: user.name.clone(),
                vhost: vhost.clone(),
                configure: permissions.configure.source().to_string(),
                write: permissions.write.source().to_string(),
                read: permissions.read.source().to_string(),
            });
        }
    }
    let mut vhosts: Vec<_> = snapshot.vhosts.values().collect();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    for vhost in vhosts {
        let mut limits = file::Limits::new();
        if let Some(max) = vhost.limits.max_connections {
            limits.insert("max-connections".into(), i64::from(max));
        }
        if let Some(max) = vhost.limits.max_queues {
            limits.insert("max-queues".into(), i64::from(max));
        }
        if !limits.is_empty() {
            out.parameters.push(file::Parameter {
                vhost: vhost.name.clone(),
                component: "vhost-limits".into(),
                name: "limits".into(),
                value: serde_json::to_value(&limits).unwrap_or_default(),
            });
        }
        out.vhosts.push(file::Vhost { name: vhost.name.clone(), limits, ..Default::default() });
        export_policies(vhost, &mut out);
        let mut exchanges: Vec<_> =
            vhost.exchanges.values().filter(|exchange| !is_predeclared(&exchange.name)).collect();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        for exchange in &exchanges {
            out.exchanges.push(file::Exchange {
                vhost: vhost.name.clone(),
                name: exchange.name.clone(),
                exchange_type: exchange.kind.as_str().to_string(),
                durable: exchange.durable,
                auto_delete: exchange.auto_delete,
                internal: exchange.internal,
                arguments: exchange.arguments.clone(),
            });
        }
        let mut queues: Vec<_> = vhost.queues.values().filter(|queue| queue.exclusive_owner.is_none()).collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for queue in &queues {
            out.queues.push(file::Queue {
                vhost: vhost.name.clone(),
                name: queue.name.clone(),
                durable: queue.durable,
                auto_delete: queue.auto_delete,
                arguments: queue.arguments.clone(),
                queue_type: QueueType::of(&queue.arguments).as_str().into(),
            });
        }
        let mut sources: Vec<_> = vhost.exchanges.values().filter(|exchange| !exchange.name.is_empty()).collect();
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        for source in sources {
            for (destination, routing_key, arguments) in source.table.bindings() {
                let found = match destination {
                    Destination::Queue(id) => vhost
                        .queues
                        .values()
                        .find(|queue| queue.id == id && queue.exclusive_owner.is_none())
                        .map(|queue| (queue.name.clone(), DestinationType::Queue)),
                    Destination::Exchange(id) => {
                        vhost.exchange_by_id(id).map(|target| (target.name.clone(), DestinationType::Exchange))
                    }
                };
                if let Some((destination, destination_type)) = found {
                    out.bindings.push(file::Binding {
                        vhost: vhost.name.clone(),
                        source: source.name.clone(),
                        destination,
                        destination_type,
                        routing_key: routing_key.to_string(),
                        arguments: arguments.clone(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/rabbitmq-3.10-definitions.json");

    #[test]
    fn a_rabbitmq_export_imports_and_its_users_log_in_with_their_old_passwords() {
        let parsed = file::parse(FIXTURE).expect("the fixture parses");
        let mut definitions = Definitions::new(2);
        let imported = definitions.import(&parsed.definitions).expect("imports");
        assert!(!imported.created_queues.is_empty());
        let snapshot = definitions.snapshot().clone();
        for user in &parsed.definitions.users {
            assert!(snapshot.user(&user.name).is_some(), "user {} imported", user.name);
        }
        // Export and import again into fresh definitions: the same users, vhosts, queues.
        let exported = export(&snapshot);
        let again = file::parse(file::to_json(&exported).as_bytes()).expect("our export parses");
        let mut second = Definitions::new(2);
        second.import(&again.definitions).expect("imports again");
        let names = |snapshot: &Snapshot| {
            let mut queues: Vec<String> = snapshot
                .vhosts
                .values()
                .flat_map(|vhost| vhost.queues.values().map(|queue| format!("{}/{}", queue.vhost, queue.name)))
                .collect();
            queues.sort();
            queues
        };
        assert_eq!(names(second.snapshot()), names(&snapshot));
        assert_eq!(export(second.snapshot()).bindings.len(), exported.bindings.len());
    }

    #[test]
    fn policies_and_operator_policies_are_imported_and_exported() {
        let document = br#"{"vhosts":[{"name":"/"}],
            "policies":[{"vhost":"/","name":"limit","pattern":"^q","apply-to":"queues",
                         "definition":{"max-length":5},"priority":2}],
            "parameters":[{"vhost":"/","component":"operator_policy","name":"cap",
                           "value":{"pattern":".*","definition":{"message-ttl":1000},"priority":0,"apply-to":"all"}}],
            "queues":[{"name":"q1","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}"#;
        let parsed = file::parse(document).expect("parses");
        let mut definitions = Definitions::new(2);
        let imported = definitions.import(&parsed.definitions).expect("imports");
        assert!(imported.warnings.iter().all(|warning| !warning.contains("ignored")), "{:?}", imported.warnings);
        let queue = definitions.snapshot().vhost("/").expect("vhost").queues.get("q1").expect("queue").clone();
        assert_eq!((queue.policies.policy_name(), queue.policies.operator_policy_name()), ("limit", "cap"));
        let exported = export(definitions.snapshot());
        assert_eq!(exported.policies.len(), 1);
        assert_eq!(exported.policies[0].definition["max-length"], 5);
        let operator = exported.parameters.iter().find(|parameter| parameter.component == "operator_policy");
        assert_eq!(operator.expect("exported").value["definition"]["message-ttl"], 1000);

        let bad = br#"{"policies":[{"vhost":"/","name":"bad","pattern":".*","definition":{"max-priority":5}}]}"#;
        let parsed = file::parse(bad).expect("parses");
        let error = definitions.import(&parsed.definitions).expect_err("refused");
        assert_eq!(error, "policy 'bad' in vhost '/': [{<<\"max-priority\">>,5}] are not recognised policy settings");
    }

    #[test]
    fn an_import_with_a_bad_item_changes_nothing() {
        let mut definitions = Definitions::new(2);
        let before = definitions.snapshot().clone();
        let document = br#"{"vhosts":[{"name":"new"}],
            "users":[{"name":"u","password_hash":"","hashing_algorithm":"rabbit_password_hashing_sha256","tags":[]}],
            "queues":[{"name":"q","vhost":"new","durable":true,"auto_delete":false,"arguments":{}},
                      {"name":"r","vhost":"new","durable":true,"auto_delete":false,"arguments":{"x-max-length":-1}}]}"#;
        let parsed = file::parse(document).expect("parses");
        let error = definitions.import(&parsed.definitions).expect_err("x-max-length -1 is refused");
        assert!(error.starts_with("queue 'r' in vhost 'new': PRECONDITION_FAILED"), "{error}");
        assert!(definitions.snapshot().vhost("new").is_none(), "nothing half-imported");
        assert!(definitions.snapshot().user("u").is_none());
        assert!(Arc::ptr_eq(definitions.snapshot(), &before));
    }
}
