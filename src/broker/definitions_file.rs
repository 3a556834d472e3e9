//! RabbitMQ's definitions file: the JSON of `rabbitmqctl export_definitions`, of the management
//! API's `GET /api/definitions` (and `/api/definitions/VHOST` for one virtual host), and of
//! `load_definitions`, as RabbitMQ 3.10 reads and writes it. This module reads such a file into
//! typed items, checks them, and writes them back in RabbitMQ 3.10's shape; applying them to the
//! broker, and reading or writing the file, is for its callers. It does no I/O.
//!
//! What is understood, per top-level key (RabbitMQ 3.10's `rabbit_definitions` and
//! `rabbit_auth_backend_internal:put_user/3` are the reference):
//!
//! - `rabbit_version`, `rabbitmq_version`, `product_name`, `product_version`: kept as read.
//!   The version decides the hash of a user without `hashing_algorithm` (MD5 before 3.6.0).
//! - `users`: `name`; `password_hash` (base64) with `hashing_algorithm`, or a cleartext
//!   `password` (RabbitMQ hashes it on import; both at once is refused); neither is a user
//!   without a password. `tags` as a list (3.9+) or a comma-separated string (older exports),
//!   or the pre-3.0 `administrator` flag; one of them is required, as in RabbitMQ. `limits`
//!   (`max-connections`, `max-channels`). The `permissions` preset of a new user is ignored.
//! - `vhosts`: `name`; `metadata.description`, `metadata.tags`, `metadata.default_queue_type`
//!   (a top-level `description` or `tags` wins, as in RabbitMQ); `limits` as RabbitMQ 3.10
//!   writes it (a list of `[name, value]` pairs) or as an object; `tracing`. RabbitMQ's import
//!   takes vhost limits from `parameters` (component `vhost-limits`), not from this `limits`.
//! - `permissions` (`user`, `vhost`, `configure`, `write`, `read`) and `topic_permissions`
//!   (`user`, `vhost`, `exchange`, `write`, `read`): regular expressions.
//! - `parameters` (`vhost`, `component`, `name`, `value`) and `global_parameters` (`name`,
//!   `value`): kept as JSON, whatever the component (federation, shovel, vhost limits, ...).
//! - `policies`: `vhost`, `name`, `pattern`, `apply-to` (default `all`), `definition` (an
//!   object, kept as JSON), `priority` (default 0).
//! - `queues`: `vhost`, `name`, `durable`, `auto_delete`, `arguments`, `type` (3.10's export
//!   writes it; RabbitMQ's import ignores it and follows `x-queue-type`; absent, it is read
//!   from `x-queue-type`, else `classic`).
//! - `exchanges`: `vhost`, `name`, `type`, `durable`, `auto_delete`, `internal` (default
//!   false), `arguments`.
//! - `bindings`: `vhost`, `source`, `destination`, `destination_type` (`queue` or
//!   `exchange`), `routing_key`, `arguments`.
//!
//! `arguments` become AMQP field tables with RabbitMQ's types (see `arguments.rs`).
//!
//! Reading is all or nothing: JSON that is cut short, or an item of the wrong shape (a missing
//! `name`, `durable: "yes"`), fails the whole file with every problem found, each naming its
//! path (`users[2].tags: expected a string or a list, found a number`). A key this module does
//! not know, at the top or in an item, is ignored with a warning, never an error, so that files
//! of other versions and plugins load. An item's missing `vhost` is an error in a whole-broker
//! file; `parse_for_vhost` reads a single virtual host's export (no `vhost` in its items, no
//! users, vhosts, permissions or global parameters) into a given virtual host, as RabbitMQ's
//! per-vhost import does.
//!
//! Queues and exchanges named `amq.*`, and the default exchange, are left out with a warning,
//! as RabbitMQ's import skips them. The JSON is walked as a `serde_json::Value` rather than
//! through derived `Deserialize` impls, so that each problem carries its path, both shapes of
//! `tags` and `limits` are read, and an unknown key is a warning rather than an error.
//!
//! `validate` then checks the values as RabbitMQ's import would (see `validate.rs`), and
//! `to_json` writes RabbitMQ 3.10's export shape, which RabbitMQ 3.10 imports: the keys and
//! value types of `rabbitmqctl export_definitions`, plus `product_name`/`product_version` and
//! each exchange's `internal` as the management API's export writes them.

use std::collections::BTreeMap;
use std::fmt;

use amq_protocol::types::{AMQPValue, FieldTable};
use serde_json::{json, Map, Value};

use super::passwords::{HashAlgorithm, PasswordHash, SaltError};

mod arguments;
mod read;
mod validate;

pub use arguments::{field_table_to_json, json_to_field_table};

/// The `rabbit_version` and `rabbitmq_version` this broker writes: the RabbitMQ release whose
/// export shape `to_json` follows, so that RabbitMQ and its tools read the file as that one's.
pub const EXPORT_RABBITMQ_VERSION: &str = "3.10.8";

/// The `product_name` this broker writes; `product_version` is the crate's version.
pub const PRODUCT_NAME: &str = "SpateMQ";

/// Named limits of a user or a virtual host (`max-connections` → 64); RabbitMQ reads any
/// negative value as "no limit".
pub type Limits = BTreeMap<String, i64>;

/// Everything a definitions file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DefinitionsFile {
    pub rabbit_version: Option<String>,
    pub rabbitmq_version: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub users: Vec<User>,
    pub vhosts: Vec<Vhost>,
    pub permissions: Vec<Permission>,
    pub topic_permissions: Vec<TopicPermission>,
    pub parameters: Vec<Parameter>,
    pub global_parameters: Vec<GlobalParameter>,
    pub policies: Vec<Policy>,
    pub queues: Vec<Queue>,
    pub exchanges: Vec<Exchange>,
    pub bindings: Vec<Binding>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Base64 of `salt ‖ digest` as in the file; "" or None: no password (unless `password`).
    pub password_hash: Option<String>,
    /// The RabbitMQ module that made `password_hash`. When the file does not name one, the
    /// one RabbitMQ would assume for the file's version; an unknown name is kept for
    /// `validate` to report.
    pub hashing_algorithm: String,
    /// A cleartext password, which RabbitMQ's import accepts instead of a hash.
    pub password: Option<String>,
    pub tags: Vec<String>,
    pub limits: Limits,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vhost {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    /// `classic`, `quorum` or `stream`; None when the file does not say.
    pub default_queue_type: Option<String>,
    pub limits: Limits,
    pub tracing: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPermission {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// A runtime parameter of a plugin component (`federation-upstream`, `vhost-limits`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub vhost: String,
    pub component: String,
    pub name: String,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalParameter {
    pub name: String,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    /// `all`, `queues` or `exchanges`.
    pub apply_to: String,
    pub definition: Map<String, Value>,
    pub priority: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Queue {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The export's `type`: `classic`, `quorum` or `stream`.
    pub queue_type: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub vhost: String,
    pub name: String,
    /// `direct`, `fanout`, `topic`, `headers`, or a plugin's type.
    pub exchange_type: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationType {
    Queue,
    Exchange,
}

impl DestinationType {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationType::Queue => "queue",
            DestinationType::Exchange => "exchange",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_type: DestinationType,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// One thing wrong with a file, at a path such as `users[2].tags` ("" for the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: &str, message: impl Into<String>) -> Problem {
        Problem { path: path.to_string(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a definitions file is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefinitionsFileError {
    /// Not JSON, or cut short; serde_json's description with the line and column.
    Syntax(String),
    /// JSON, but not the shape of a definitions file: every problem found.
    Shape(Vec<Problem>),
    /// Well-formed, but with values RabbitMQ's import would refuse: every problem found.
    Invalid(Vec<Problem>),
}

impl fmt::Display for DefinitionsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, problems) = match self {
            DefinitionsFileError::Syntax(reason) => {
                return write!(f, "the definitions file is not valid JSON: {reason}")
            }
            DefinitionsFileError::Shape(problems) => ("is not a definitions file", problems),
            DefinitionsFileError::Invalid(problems) => ("has invalid definitions", problems),
        };
        write!(f, "the file {what} ({} problem{}):", problems.len(), if problems.len() == 1 { "" } else { "s" })?;
        problems.iter().try_for_each(|problem| write!(f, "\n  {problem}"))
    }
}

impl std::error::Error for DefinitionsFileError {}

/// A file read, with the warnings about what it held that is not imported (unknown keys,
/// sections a single virtual host's import skips, items RabbitMQ skips).
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub definitions: DefinitionsFile,
    pub warnings: Vec<String>,
}

/// Reads a whole-broker definitions file: every item names its virtual host.
pub fn parse(bytes: &[u8]) -> Result<Parsed, DefinitionsFileError> {
    read::file(bytes, None)
}

/// Reads a single virtual host's definitions (`GET /api/definitions/VHOST`) into `vhost`: the
/// items' own `vhost`, if any, is replaced, and the sections that such an import skips (users,
/// vhosts, permissions, topic permissions, global parameters) are left out with a warning.
pub fn parse_for_vhost(bytes: &[u8], vhost: &str) -> Result<Parsed, DefinitionsFileError> {
    read::file(bytes, Some(vhost))
}

/// Checks the values as RabbitMQ 3.10's import would and reports every problem at once (what
/// is checked, and what is left to the importer, is listed in `validate.rs`).
pub fn validate(definitions: &DefinitionsFile) -> Result<(), DefinitionsFileError> {
    validate::check(definitions)
}

impl DefinitionsFile {
    /// The version RabbitMQ's import goes by: `rabbitmq_version`, else `rabbit_version`.
    pub fn version(&self) -> Option<&str> {
        self.rabbitmq_version.as_deref().or(self.rabbit_version.as_deref())
    }
}

impl User {
    /// A user as this broker exports it.
    pub fn with_hash(name: &str, hash: &PasswordHash, tags: Vec<String>, limits: Limits) -> User {
        User {
            name: name.to_string(),
            password_hash: Some(hash.to_base64()),
            hashing_algorithm: hash.algorithm().rabbit_name().to_string(),
            password: None,
            tags,
            limits,
        }
    }

    /// The hash to store for this user: the file's hash read with its algorithm, a new SHA-256
    /// hash of a cleartext `password`, or no password. Fails on what `validate` reports (both
    /// given, an unknown algorithm, a malformed hash) and when no salt can be had.
    pub fn password_hash(&self) -> Result<PasswordHash, String> {
        match (self.password_hash.as_deref(), self.password.as_deref()) {
            (Some(_), Some(_)) => Err("both password and password_hash are given".into()),
            (None, Some("")) | (None, None) => Ok(PasswordHash::none()),
            (None, Some(password)) => {
                PasswordHash::new(password.as_bytes()).map_err(|error: SaltError| error.to_string())
            }
            (Some(text), None) => {
                let algorithm = HashAlgorithm::from_rabbit_name(&self.hashing_algorithm)
                    .ok_or_else(|| format!("unknown hashing_algorithm '{}'", self.hashing_algorithm))?;
                PasswordHash::from_base64(algorithm, text)
            }
        }
    }
}

/// The file in RabbitMQ 3.10's export shape, pretty-printed, with this broker's
/// `rabbit_version`, `rabbitmq_version`, `product_name` and `product_version` (the ones in
/// `definitions` are not written). Keys come out sorted, as in `rabbitmqctl export_definitions`.
pub fn to_json(definitions: &DefinitionsFile) -> String {
    let document = json!({
        "rabbit_version": EXPORT_RABBITMQ_VERSION,
        "rabbitmq_version": EXPORT_RABBITMQ_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": definitions.users.iter().map(user_json).collect::<Vec<_>>(),
        "vhosts": definitions.vhosts.iter().map(vhost_json).collect::<Vec<_>>(),
        "permissions": definitions.permissions.iter().map(|permission| json!({
            "user": permission.user, "vhost": permission.vhost,
            "configure": permission.configure, "write": permission.write, "read": permission.read,
        })).collect::<Vec<_>>(),
        "topic_permissions": definitions.topic_permissions.iter().map(|permission| json!({
            "user": permission.user, "vhost": permission.vhost, "exchange": permission.exchange,
            "write": permission.write, "read": permission.read,
        })).collect::<Vec<_>>(),
        "parameters": definitions.parameters.iter().map(|parameter| json!({
            "vhost": parameter.vhost, "component": parameter.component,
            "name": parameter.name, "value": parameter.value,
        })).collect::<Vec<_>>(),
        "global_parameters": definitions.global_parameters.iter().map(|parameter| json!({
            "name": parameter.name, "value": parameter.value,
        })).collect::<Vec<_>>(),
        "policies": definitions.policies.iter().map(|policy| json!({
            "vhost": policy.vhost, "name": policy.name, "pattern": policy.pattern,
            "apply-to": policy.apply_to, "definition": policy.definition, "priority": policy.priority,
        })).collect::<Vec<_>>(),
        "queues": definitions.queues.iter().map(|queue| json!({
            "vhost": queue.vhost, "name": queue.name, "type": queue.queue_type,
            "durable": queue.durable, "auto_delete": queue.auto_delete,
            "arguments": field_table_to_json(&queue.arguments),
        })).collect::<Vec<_>>(),
        "exchanges": definitions.exchanges.iter().map(|exchange| json!({
            "vhost": exchange.vhost, "name": exchange.name, "type": exchange.exchange_type,
            "durable": exchange.durable, "auto_delete": exchange.auto_delete,
            "internal": exchange.internal, "arguments": field_table_to_json(&exchange.arguments),
        })).collect::<Vec<_>>(),
        "bindings": definitions.bindings.iter().map(|binding| json!({
            "vhost": binding.vhost, "source": binding.source,
            "destination": binding.destination, "destination_type": binding.destination_type.as_str(),
            "routing_key": binding.routing_key, "arguments": field_table_to_json(&binding.arguments),
        })).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string());
    text.push('\n');
    text
}

/// RabbitMQ writes `password_hash` always ("" without a password) and `hashing_algorithm`
/// with it; a cleartext `password` is written only when there is no hash to write.
fn user_json(user: &User) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), json!(user.name));
    match (&user.password_hash, &user.password) {
        (None, Some(password)) => {
            object.insert("password".into(), json!(password));
        }
        (hash, _) => {
            object.insert("password_hash".into(), json!(hash.as_deref().unwrap_or("")));
        }
    }
    object.insert("hashing_algorithm".into(), json!(user.hashing_algorithm));
    object.insert("tags".into(), json!(user.tags));
    object.insert("limits".into(), json!(user.limits));
    Value::Object(object)
}

/// RabbitMQ 3.10 writes a vhost's limits as a list of `[name, value]` pairs and its
/// description, tags and default queue type under `metadata`.
fn vhost_json(vhost: &Vhost) -> Value {
    let limits: Vec<Value> = vhost.limits.iter().map(|(name, value)| json!([name, value])).collect();
    let mut metadata = Map::new();
    metadata.insert("description".into(), json!(vhost.description));
    metadata.insert("tags".into(), json!(vhost.tags));
    if let Some(queue_type) = &vhost.default_queue_type {
        metadata.insert("default_queue_type".into(), json!(queue_type));
    }
    let mut object = Map::new();
    object.insert("name".into(), json!(vhost.name));
    object.insert("limits".into(), Value::Array(limits));
    object.insert("metadata".into(), Value::Object(metadata));
    if let Some(tracing) = vhost.tracing {
        object.insert("tracing".into(), json!(tracing));
    }
    Value::Object(object)
}

/// "a string", "a number", ...: what a JSON value is, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The queue type a queue's arguments ask for: `x-queue-type`, else `classic`.
fn queue_type_of(arguments: &FieldTable) -> String {
    match arguments.inner().get("x-queue-type") {
        Some(AMQPValue::LongString(text)) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(text)) => text.as_str().to_string(),
        _ => "classic".to_string(),
    }
}

#[cfg(test)]
mod tests;
