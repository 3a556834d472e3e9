//! Reading a definitions file's JSON into a `DefinitionsFile`: the shape of every item, with
//! every problem and every ignored key reported by its path. Values are checked by `validate`.

use serde_json::{Map, Value};

use super::{
    json_kind, json_to_field_table, queue_type_of, Binding, DefinitionsFile, DefinitionsFileError, DestinationType,
    Exchange, GlobalParameter, Limits, Parameter, Parsed, Permission, Policy, Problem, Queue, TopicPermission, User,
    Vhost,
};
use crate::broker::passwords::HashAlgorithm;
use amq_protocol::types::FieldTable;

/// The sections a single virtual host's import leaves out (RabbitMQ's `apply_defs/4`).
const BROKER_WIDE_SECTIONS: &[&str] = &["users", "vhosts", "permissions", "topic_permissions", "global_parameters"];

pub(super) fn file(bytes: &[u8], target_vhost: Option<&str>) -> Result<Parsed, DefinitionsFileError> {
    let document: Value =
        serde_json::from_slice(bytes).map_err(|error| DefinitionsFileError::Syntax(error.to_string()))?;
    let mut sink = Sink::default();
    let definitions = read_document(&document, target_vhost, &mut sink);
    if sink.problems.is_empty() {
        Ok(Parsed { definitions, warnings: sink.warnings })
    } else {
        Err(DefinitionsFileError::Shape(sink.problems))
    }
}

#[derive(Default)]
struct Sink {
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Sink {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// What a value is, for "expected X, found Y"; numbers are shown, since "expected an integer,
/// found a number" would not say what is wrong.
fn found(value: &Value) -> String {
    match value {
        Value::Number(number) => format!("the number {number}"),
        other => json_kind(other).to_string(),
    }
}

/// One JSON object being read. The keys asked for are known; the others are warned about when
/// it is finished. A null value counts as absent.
struct Fields<'a, 's> {
    path: String,
    object: &'a Map<String, Value>,
    asked: Vec<&'static str>,
    sink: &'s mut Sink,
}

impl<'a, 's> Fields<'a, 's> {
    fn open(value: &'a Value, path: String, sink: &'s mut Sink) -> Option<Fields<'a, 's>> {
        match value {
            Value::Object(object) => Some(Fields { path, object, asked: Vec::new(), sink }),
            other => {
                sink.problem(&path, format!("expected an object, found {}", found(other)));
                None
            }
        }
    }

    fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        let path = self.path_of(key);
        self.sink.problem(&path, message);
    }

    fn wrong(&mut self, key: &str, expected: &str, value: &Value) {
        self.problem(key, format!("expected {expected}, found {}", found(value)));
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.asked.push(key);
        self.object.get(key).filter(|value| !value.is_null())
    }

    fn present(&self, key: &str) -> bool {
        self.object.get(key).is_some_and(|value| !value.is_null())
    }

    fn required(&mut self, key: &'static str, expected: &str) -> Option<&'a Value> {
        let value = self.get(key);
        if value.is_none() {
            self.problem(key, format!("missing, expected {expected}"));
        }
        value
    }

    fn string_of(&mut self, key: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            other => {
                self.wrong(key, "a string", other);
                None
            }
        }
    }

    fn string(&mut self, key: &'static str) -> Option<String> {
        let value = self.required(key, "a string")?;
        self.string_of(key, value)
    }

    fn optional_string(&mut self, key: &'static str) -> Option<String> {
        let value = self.get(key)?;
        self.string_of(key, value)
    }

    fn boolean_of(&mut self, key: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(flag) => Some(*flag),
            other => {
                self.wrong(key, "true or false", other);
                None
            }
        }
    }

    fn boolean(&mut self, key: &'static str) -> Option<bool> {
        let value = self.required(key, "true or false")?;
        self.boolean_of(key, value)
    }

    fn optional_boolean(&mut self, key: &'static str) -> Option<bool> {
        let value = self.get(key)?;
        self.boolean_of(key, value)
    }

    fn optional_integer(&mut self, key: &'static str) -> Option<i64> {
        match self.get(key)? {
            Value::Number(number) if number.is_i64() => number.as_i64(),
            other => {
                self.wrong(key, "an integer", other);
                None
            }
        }
    }

    fn object(&mut self, key: &'static str) -> Option<&'a Map<String, Value>> {
        match self.required(key, "an object")? {
            Value::Object(object) => Some(object),
            other => {
                self.wrong(key, "an object", other);
                None
            }
        }
    }

    /// Tags as a list of strings (3.9+) or one comma-separated string (older exports);
    /// blanks around a tag and empty tags are dropped, as RabbitMQ drops them.
    fn tags(&mut self, key: &'static str) -> Option<Vec<String>> {
        let tidy = |tag: &str| Some(tag.trim().to_string()).filter(|tag| !tag.is_empty());
        match self.get(key)? {
            Value::String(text) => Some(text.split(',').filter_map(tidy).collect()),
            Value::Array(items) => {
                let mut tags = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    match item {
                        Value::String(tag) => tags.extend(tidy(tag)),
                        other => self.wrong(&format!("{key}[{index}]"), "a string", other),
                    }
                }
                Some(tags)
            }
            other => {
                self.wrong(key, "a string or a list", other);
                None
            }
        }
    }

    /// Limits as an object (`{"max-queues": 128}`) or as RabbitMQ 3.10 writes a vhost's, a list
    /// of `[name, value]` pairs; values are integers.
    fn limits(&mut self, key: &'static str) -> Limits {
        let mut limits = Limits::new();
        let mut add = |fields: &mut Self, path: String, name: &str, value: &Value| match value.as_i64() {
            Some(number) => {
                limits.insert(name.to_string(), number);
            }
            None => fields.sink.problem(&path, format!("expected an integer, found {}", found(value))),
        };
        let limits_path = self.path_of(key);
        match self.get(key) {
            None => {}
            Some(Value::Object(object)) => {
                for (name, value) in object {
                    add(self, join(&limits_path, name), name, value);
                }
            }
            Some(Value::Array(pairs)) => {
                for (index, pair) in pairs.iter().enumerate() {
                    let path = format!("{limits_path}[{index}]");
                    match pair.as_array().map(Vec::as_slice) {
                        Some([Value::String(name), value]) => add(self, path, name, value),
                        _ => self.sink.problem(&path, format!("expected a [name, value] pair, found {}", found(pair))),
                    }
                }
            }
            Some(other) => self.wrong(key, "an object or a list of [name, value] pairs", other),
        }
        limits
    }

    fn arguments(&mut self, key: &'static str) -> FieldTable {
        let Some(value) = self.get(key) else { return FieldTable::default() };
        json_to_field_table(value).unwrap_or_else(|problem| {
            let path = join(&self.path_of(key), &problem.path);
            self.sink.problem(&path, problem.message);
            FieldTable::default()
        })
    }

    /// The item's virtual host: its own `vhost`, or the target of a single virtual host's
    /// import, which replaces any the item names.
    fn vhost(&mut self, target: Option<&str>) -> Option<String> {
        let Some(target) = target else {
            let value = self.get("vhost");
            return match value {
                Some(value) => self.string_of("vhost", value),
                None => {
                    let text = "missing, expected a string (a single virtual host's definitions are read into a given virtual host)";
                    self.problem("vhost", text);
                    None
                }
            };
        };
        if let Some(own) = self.optional_string("vhost").filter(|own| own != target) {
            let path = self.path_of("vhost");
            self.sink.warnings.push(format!("{path}: '{own}' ignored, the definitions are imported into '{target}'"));
        }
        Some(target.to_string())
    }

    /// A key RabbitMQ knows that this broker does not import.
    fn ignore(&mut self, key: &'static str, why: &str) {
        if self.get(key).is_some() {
            let path = self.path_of(key);
            self.sink.warnings.push(format!("{path}: ignored, {why}"));
        }
    }

    fn warn(&mut self, message: String) {
        self.sink.warnings.push(format!("{}: {message}", self.path));
    }

    /// Warns about the keys nobody asked for; gives the sink back for what is read next.
    fn finish(self) -> &'s mut Sink {
        for key in self.object.keys().filter(|key| !self.asked.contains(&key.as_str())) {
            self.sink.warnings.push(format!("{}: unknown field, ignored", join(&self.path, key)));
        }
        self.sink
    }
}

fn read_document(document: &Value, target: Option<&str>, sink: &mut Sink) -> DefinitionsFile {
    let Some(mut top) = Fields::open(document, String::new(), sink) else { return DefinitionsFile::default() };
    let mut definitions = DefinitionsFile {
        rabbit_version: top.optional_string("rabbit_version"),
        rabbitmq_version: top.optional_string("rabbitmq_version"),
        product_name: top.optional_string("product_name"),
        product_version: top.optional_string("product_version"),
        ..DefinitionsFile::default()
    };
    let names = [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
        "global_parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ];
    let sections: Vec<Option<&Value>> = names.iter().map(|name| top.get(name)).collect();
    top.finish();
    let version = definitions.version().map(str::to_string);
    for (name, section) in names.into_iter().zip(sections) {
        let Some(section) = section else { continue };
        if target.is_some() && BROKER_WIDE_SECTIONS.contains(&name) {
            sink.warnings.push(format!("{name}: ignored, a single virtual host's import leaves it out"));
            continue;
        }
        let Value::Array(items) = section else {
            sink.problem(name, format!("expected a list, found {}", found(section)));
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            let Some(fields) = Fields::open(item, format!("{name}[{index}]"), sink) else { continue };
            add_item(&mut definitions, name, fields, target, version.as_deref());
        }
    }
    definitions
}

fn add_item(
    definitions: &mut DefinitionsFile,
    section: &str,
    fields: Fields,
    target: Option<&str>,
    version: Option<&str>,
) {
    match section {
        "users" => definitions.users.extend(user(fields, version)),
        "vhosts" => definitions.vhosts.extend(vhost(fields)),
        "permissions" => definitions.permissions.extend(permission(fields)),
        "topic_permissions" => definitions.topic_permissions.extend(topic_permission(fields)),
        "parameters" => definitions.parameters.extend(parameter(fields, target)),
        "global_parameters" => definitions.global_parameters.extend(global_parameter(fields)),
        "policies" => definitions.policies.extend(policy(fields, target)),
        "queues" => definitions.queues.extend(queue(fields, target)),
        "exchanges" => definitions.exchanges.extend(exchange(fields, target)),
        _ => definitions.bindings.extend(binding(fields, target)),
    }
}

fn user(mut fields: Fields, version: Option<&str>) -> Option<User> {
    let name = fields.string("name");
    let password_hash = fields.optional_string("password_hash");
    let hashing_algorithm = fields.optional_string("hashing_algorithm");
    let password = fields.optional_string("password");
    let has_tags = fields.present("tags");
    let mut tags = fields.tags("tags");
    // Exports before 3.0 had an `administrator` flag instead of tags.
    match fields.get("administrator") {
        _ if has_tags => {}
        Some(Value::Bool(true)) => tags = Some(vec!["administrator".to_string()]),
        Some(Value::String(flag)) if flag == "true" => tags = Some(vec!["administrator".to_string()]),
        Some(Value::Bool(false)) => tags = Some(Vec::new()),
        Some(Value::String(flag)) if flag == "false" => tags = Some(Vec::new()),
        Some(other) => fields.wrong("administrator", "true or false", other),
        None => fields.problem("tags", "missing, expected a string or a list (RabbitMQ refuses a user without tags)"),
    }
    let limits = fields.limits("limits");
    fields.ignore("permissions", "a new user's preset permissions are not imported (list them under `permissions`)");
    fields.finish();
    let hashing_algorithm =
        hashing_algorithm.unwrap_or_else(|| HashAlgorithm::for_unnamed(version).rabbit_name().to_string());
    Some(User { name: name?, password_hash, hashing_algorithm, password, tags: tags?, limits })
}

fn vhost(mut fields: Fields) -> Option<Vhost> {
    let name = fields.string("name");
    let description = fields.optional_string("description");
    let tags = fields.tags("tags");
    let limits = fields.limits("limits");
    let tracing = fields.optional_boolean("tracing");
    let metadata = fields.get("metadata");
    let path = fields.path_of("metadata");
    let sink = fields.finish();
    let (mut metadata_description, mut metadata_tags, mut default_queue_type) = (None, None, None);
    if let Some(value) = metadata {
        if let Some(mut metadata) = Fields::open(value, path, sink) {
            metadata_description = metadata.optional_string("description");
            metadata_tags = metadata.tags("tags");
            default_queue_type = metadata.optional_string("default_queue_type");
            metadata.finish();
        }
    }
    Some(Vhost {
        name: name?,
        description: description.or(metadata_description).unwrap_or_default(),
        tags: tags.or(metadata_tags).unwrap_or_default(),
        default_queue_type,
        limits,
        tracing,
    })
}

fn permission(mut fields: Fields) -> Option<Permission> {
    let user = fields.string("user");
    let vhost = fields.vhost(None);
    let configure = fields.string("configure");
    let write = fields.string("write");
    let read = fields.string("read");
    fields.finish();
    Some(Permission { user: user?, vhost: vhost?, configure: configure?, write: write?, read: read? })
}

fn topic_permission(mut fields: Fields) -> Option<TopicPermission> {
    let user = fields.string("user");
    let vhost = fields.vhost(None);
    let exchange = fields.string("exchange");
    let write = fields.string("write");
    let read = fields.string("read");
    fields.finish();
    Some(TopicPermission { user: user?, vhost: vhost?, exchange: exchange?, write: write?, read: read? })
}

fn parameter(mut fields: Fields, target: Option<&str>) -> Option<Parameter> {
    let vhost = fields.vhost(target);
    let component = fields.string("component");
    let name = fields.string("name");
    let value = fields.required("value", "a value").cloned();
    fields.finish();
    Some(Parameter { vhost: vhost?, component: component?, name: name?, value: value? })
}

fn global_parameter(mut fields: Fields) -> Option<GlobalParameter> {
    let name = fields.string("name");
    let value = fields.required("value", "a value").cloned();
    fields.finish();
    Some(GlobalParameter { name: name?, value: value? })
}

fn policy(mut fields: Fields, target: Option<&str>) -> Option<Policy> {
    let vhost = fields.vhost(target);
    let name = fields.string("name");
    let pattern = fields.string("pattern");
    let apply_to = fields.optional_string("apply-to").unwrap_or_else(|| "all".to_string());
    let definition = fields.object("definition").cloned();
    let priority = fields.optional_integer("priority").unwrap_or(0);
    fields.finish();
    Some(Policy { vhost: vhost?, name: name?, pattern: pattern?, apply_to, definition: definition?, priority })
}

/// RabbitMQ's import skips queues and exchanges named `amq.*`, and the default exchange.
fn skipped_by_import(fields: &mut Fields, kind: &str, name: &str) -> bool {
    let reason = match name {
        "" if kind == "exchange" => "the default exchange is not imported",
        _ if name.starts_with("amq.") => "a name starting with 'amq.' is reserved, RabbitMQ's import skips it",
        _ => return false,
    };
    fields.warn(format!("{kind} '{name}' skipped: {reason}"));
    true
}

fn queue(mut fields: Fields, target: Option<&str>) -> Option<Queue> {
    let vhost = fields.vhost(target);
    let name = fields.string("name");
    let durable = fields.boolean("durable");
    let auto_delete = fields.boolean("auto_delete");
    let arguments = fields.arguments("arguments");
    let queue_type = fields.optional_string("type").unwrap_or_else(|| queue_type_of(&arguments));
    let skipped = name.as_deref().is_some_and(|name| skipped_by_import(&mut fields, "queue", name));
    fields.finish();
    let queue =
        Queue { vhost: vhost?, name: name?, durable: durable?, auto_delete: auto_delete?, arguments, queue_type };
    (!skipped).then_some(queue)
}

fn exchange(mut fields: Fields, target: Option<&str>) -> Option<Exchange> {
    let vhost = fields.vhost(target);
    let name = fields.string("name");
    let exchange_type = fields.string("type");
    let durable = fields.boolean("durable");
    let auto_delete = fields.boolean("auto_delete");
    let internal = fields.optional_boolean("internal").unwrap_or(false);
    let arguments = fields.arguments("arguments");
    let skipped = name.as_deref().is_some_and(|name| skipped_by_import(&mut fields, "exchange", name));
    fields.finish();
    let exchange = Exchange {
        vhost: vhost?,
        name: name?,
        exchange_type: exchange_type?,
        durable: durable?,
        auto_delete: auto_delete?,
        internal,
        arguments,
    };
    (!skipped).then_some(exchange)
}

fn binding(mut fields: Fields, target: Option<&str>) -> Option<Binding> {
    let vhost = fields.vhost(target);
    let source = fields.string("source");
    let destination = fields.string("destination");
    let destination_type = match fields.string("destination_type").as_deref() {
        Some("queue") => Some(DestinationType::Queue),
        Some("exchange") => Some(DestinationType::Exchange),
        Some(other) => {
            fields.problem("destination_type", format!("expected \"queue\" or \"exchange\", found \"{other}\""));
            None
        }
        None => None,
    };
    let routing_key = fields.string("routing_key");
    let arguments = fields.arguments("arguments");
    fields.finish();
    Some(Binding {
        vhost: vhost?,
        source: source?,
        destination: destination?,
        destination_type: destination_type?,
        routing_key: routing_key?,
        arguments,
    })
}
