//! Policies and operator policies, as RabbitMQ 3.10 has them: a named pattern per vhost that
//! gives the queues and exchanges whose names it matches settings an operator can change at
//! run time (`rabbit_policy`, `rabbit_policies`).
//!
//! This file is the model: parsing and validating a policy with RabbitMQ's texts, choosing the
//! policy of an object, and merging the chosen policy, operator policy and the queue's own
//! arguments into the settings the queue acts on. It does no I/O. The writer keeps each
//! object's chosen policies in the snapshot (`policy_changes.rs`); the owner shard hands a
//! queue its new settings when they change.
//!
//! The rules, from RabbitMQ 3.10:
//! - one policy per object: of those whose `apply-to` fits and whose pattern (a regular
//!   expression, searched anywhere in the name) matches, the highest priority wins (this
//!   broker breaks a tie by the policy name; RabbitMQ leaves it unspecified);
//! - an operator policy is chosen the same way, separately; for the keys both define it caps
//!   the policy: `message-ttl`, `expires`, `max-length`, `max-length-bytes` and
//!   `delivery-limit` take the lower value;
//! - a queue's own argument wins over the policies for `dead-letter-exchange`,
//!   `dead-letter-routing-key` and `overflow`; for the numeric keys above the lower of
//!   argument and policy value applies (`rabbit_amqqueue_process`'s `res_min`);
//! - a quorum queue (`rabbit_quorum_queue:ra_machine_config`) differs in two keys: the
//!   policy's `overflow` and `expires` win over its arguments, and overflow
//!   `reject-publish-dlx` acts as `drop-head`.

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use serde_json::{Map, Value};

use super::queue_args::{DeadLetterTarget, Overflow, QueueArgs, QueueType};

/// Which of the two kinds of policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Set by users with the `policymaker` tag: any key RabbitMQ knows.
    Policy,
    /// Set by operators to cap what users set: the numeric limits only.
    Operator,
}

/// What a policy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyTo {
    All,
    Queues,
    Exchanges,
}

impl ApplyTo {
    pub fn parse(text: &str) -> Result<ApplyTo, String> {
        match text {
            "all" => Ok(ApplyTo::All),
            "queues" => Ok(ApplyTo::Queues),
            "exchanges" => Ok(ApplyTo::Exchanges),
            other => Err(format!("apply-to '{other}' unrecognised; should be 'queues', 'exchanges' or 'all'")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::All => "all",
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
        }
    }

    fn fits(self, queue: bool) -> bool {
        match self {
            ApplyTo::All => true,
            ApplyTo::Queues => queue,
            ApplyTo::Exchanges => !queue,
        }
    }
}

/// The keys of a definition this broker acts on, typed. Keys RabbitMQ accepts that change
/// nothing here (`queue-mode`, `queue-version`, the quorum queue and stream keys, the
/// mirroring keys) are validated and kept in the definition only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySettings {
    pub message_ttl_ms: Option<u64>,
    pub expires_ms: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub delivery_limit: Option<u64>,
    pub overflow: Option<Overflow>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub alternate_exchange: Option<String>,
}

/// One policy, validated.
#[derive(Clone, Debug)]
pub struct Policy {
    pub kind: PolicyKind,
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    regex: regex_lite::Regex,
    pub apply_to: ApplyTo,
    /// The definition as given (validated): what listings and exports show.
    pub definition: Map<String, Value>,
    pub priority: i64,
    pub settings: PolicySettings,
}

/// What `set_policy` and the HTTP API are given, before validation.
#[derive(Clone, Debug)]
pub struct PolicyInput<'a> {
    pub kind: PolicyKind,
    pub vhost: &'a str,
    pub name: &'a str,
    pub pattern: &'a str,
    pub apply_to: &'a str,
    pub definition: &'a Map<String, Value>,
    pub priority: i64,
}

/// Why a policy is refused: RabbitMQ's "Validation failed" and the reason, which
/// `rabbitmqctl` prints on two lines.
pub fn validation_failed(reason: &str) -> String {
    format!("Validation failed\n\n{reason}\n")
}

impl Policy {
    /// Validates a policy in RabbitMQ's order: the pattern, `apply-to`, then the definition
    /// (each known key in name order, then the unknown keys). The error is the reason alone.
    pub fn parse(input: &PolicyInput<'_>) -> Result<Policy, String> {
        if input.name.is_empty() {
            return Err("policy name must not be empty".into());
        }
        if input.name.len() > crate::limits::NAME_MAX_BYTES {
            return Err(format!("policy name is longer than {} bytes", crate::limits::NAME_MAX_BYTES));
        }
        let regex = regex_lite::Regex::new(input.pattern).map_err(|error| {
            format!("pattern should be regular expression but is invalid: {}", error.to_string().replace('\n', " "))
        })?;
        let apply_to = ApplyTo::parse(input.apply_to)?;
        let settings = validate_definition(input.definition, input.kind)?;
        Ok(Policy {
            kind: input.kind,
            vhost: input.vhost.to_string(),
            name: input.name.to_string(),
            pattern: input.pattern.to_string(),
            regex,
            apply_to,
            definition: input.definition.clone(),
            priority: input.priority,
            settings,
        })
    }

    /// Whether this policy is a candidate for the queue or exchange `name`.
    pub fn matches(&self, name: &str, queue: bool) -> bool {
        self.apply_to.fits(queue) && self.regex.is_match(name)
    }

    /// The definition as `list_policies` prints it: compact JSON, keys in order.
    pub fn definition_json(&self) -> String {
        Value::Object(self.definition.clone()).to_string()
    }

    /// The policy as RabbitMQ's management API and definitions files show one.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to.as_str(),
            "definition": self.definition,
            "priority": self.priority,
        })
    }
}

/// Parses the JSON text of a definition (`set_policy`'s third argument).
pub fn parse_definition(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("definition must be a dictionary: {}", erlang_term(&other))),
        Err(_) => Err("JSON decoding error. Reason: badarg".into()),
    }
}

type KeyCheck = fn(&Value, &mut PolicySettings) -> Result<(), String>;

/// The keys of `rabbit_policies` (and the mirroring keys of `rabbit_mirror_queue_misc`),
/// with their checks. Sorted by key: RabbitMQ validates a definition's keys in that order.
const POLICY_KEYS: &[(&str, KeyCheck)] = &[
    ("alternate-exchange", |value, settings| {
        settings.alternate_exchange = Some(text(value, "is not a valid alternate exchange name")?);
        Ok(())
    }),
    ("dead-letter-exchange", |value, settings| {
        settings.dead_letter_exchange = Some(text(value, "is not a valid dead letter exchange name")?);
        Ok(())
    }),
    ("dead-letter-routing-key", |value, settings| {
        settings.dead_letter_routing_key = Some(text(value, "is not a valid dead letter routing key")?);
        Ok(())
    }),
    ("dead-letter-strategy", |value, _| {
        one_of(value, &["at-most-once", "at-least-once"], "is not a valid dead letter strategy")
    }),
    ("delivery-limit", |value, settings| {
        settings.delivery_limit = Some(at_least(value, 0, "is not a valid delivery limit")?);
        Ok(())
    }),
    ("expires", |value, settings| {
        settings.expires_ms = Some(at_least(value, 1, "is not a valid queue expiry")?);
        Ok(())
    }),
    ("ha-mode", |value, _| one_of(value, &["all", "exactly", "nodes"], "is not a valid ha-mode value")),
    ("ha-params", |_, _| Ok(())),
    ("ha-promote-on-failure", |value, _| {
        one_of(value, &["always", "when-synced"], "is not a valid ha-promote-on-failure value")
    }),
    ("ha-promote-on-shutdown", |value, _| {
        one_of(value, &["always", "when-synced"], "is not a valid ha-promote-on-shutdown value")
    }),
    ("ha-sync-batch-size", |value, _| at_least(value, 1, "is not a valid ha-sync-batch-size value").map(drop)),
    ("ha-sync-mode", |value, _| one_of(value, &["manual", "automatic"], "is not a valid ha-sync-mode value")),
    ("initial-cluster-size", |value, _| at_least(value, 0, "is not a valid cluster size").map(drop)),
    ("max-age", |value, _| text(value, "is not a valid max age").map(drop)),
    ("max-in-memory-bytes", |value, _| at_least(value, 0, "is not a valid maximum memory in bytes").map(drop)),
    ("max-in-memory-length", |value, _| at_least(value, 0, "is not a valid maximum memory in bytes").map(drop)),
    ("max-length", |value, settings| {
        settings.max_length = Some(at_least(value, 0, "is not a valid maximum length")?);
        Ok(())
    }),
    ("max-length-bytes", |value, settings| {
        settings.max_length_bytes = Some(at_least(value, 0, "is not a valid maximum length in bytes")?);
        Ok(())
    }),
    ("message-ttl", |value, settings| {
        settings.message_ttl_ms = Some(at_least(value, 0, "is not a valid message TTL")?);
        Ok(())
    }),
    ("overflow", |value, settings| {
        settings.overflow = Some(match value.as_str() {
            Some("drop-head") => Overflow::DropHead,
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            _ => return Err(format!("{} is not a valid overflow value", erlang_term(value))),
        });
        Ok(())
    }),
    ("queue-leader-locator", |value, _| {
        one_of(
            value,
            &["client-local", "balanced", "random", "least-leaders"],
            "is not a valid queue leader locator value",
        )
    }),
    ("queue-master-locator", |value, _| {
        one_of(value, &["min-masters", "client-local", "random"], "is not a valid queue-master-locator value")
    }),
    ("queue-mode", |value, _| one_of(value, &["default", "lazy"], "is not a valid queue-mode value")),
    ("queue-version", |value, _| match value.as_i64() {
        Some(1 | 2) => Ok(()),
        _ => Err(format!("{} is not a valid queue-version value", erlang_term(value))),
    }),
    ("stream-max-segment-size-bytes", |value, _| at_least(value, 0, "is not a valid segment size").map(drop)),
];

/// The keys an operator policy may set (`operator_policy_validator` in `rabbit_policies`).
const OPERATOR_KEYS: &[&str] = &[
    "delivery-limit",
    "expires",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "max-length",
    "max-length-bytes",
    "message-ttl",
];

/// Checks a definition the way `rabbit_policy:validation/3` does and returns what it sets.
pub fn validate_definition(definition: &Map<String, Value>, kind: PolicyKind) -> Result<PolicySettings, String> {
    if definition.is_empty() {
        return Err("no policy provided".into());
    }
    let allowed = |key: &str| kind == PolicyKind::Policy || OPERATOR_KEYS.contains(&key);
    let mut settings = PolicySettings::default();
    // serde_json's map keeps its keys sorted, as Erlang's maps:to_list does.
    for (key, value) in definition {
        if let Some((_, check)) = POLICY_KEYS.iter().find(|(known, _)| known == key).filter(|_| allowed(key)) {
            check(value, &mut settings)?;
        }
    }
    let unknown: Vec<String> = definition
        .iter()
        .filter(|(key, _)| !allowed(key) || !POLICY_KEYS.iter().any(|(known, _)| known == key))
        .map(|(key, value)| format!("{{<<\"{key}\">>,{}}}", erlang_term(value)))
        .collect();
    if !unknown.is_empty() {
        return Err(format!("[{}] are not recognised policy settings", unknown.join(",")));
    }
    Ok(settings)
}

fn text(value: &Value, problem: &str) -> Result<String, String> {
    value.as_str().map(str::to_string).ok_or_else(|| format!("{} {problem}", erlang_term(value)))
}

fn at_least(value: &Value, minimum: i64, problem: &str) -> Result<u64, String> {
    let number = match value.as_i64() {
        Some(number) if number >= minimum => u64::try_from(number).ok(),
        Some(_) => None,
        // Above i64::MAX: still an integer Erlang accepts.
        None => value.as_u64(),
    };
    number.ok_or_else(|| format!("{} {problem}", erlang_term(value)))
}

fn one_of(value: &Value, allowed: &[&str], problem: &str) -> Result<(), String> {
    match value.as_str() {
        Some(found) if allowed.contains(&found) => Ok(()),
        _ => Err(format!("{} {problem}", erlang_term(value))),
    }
}

/// A JSON value as RabbitMQ's messages print the Erlang term it decodes to (`~p`).
pub fn erlang_term(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("<<\"{text}\">>"),
        Value::Array(items) => format!("[{}]", items.iter().map(erlang_term).collect::<Vec<_>>().join(",")),
        Value::Object(map) => {
            let pairs: Vec<String> =
                map.iter().map(|(key, value)| format!("<<\"{key}\">> => {}", erlang_term(value))).collect();
            format!("#{{{}}}", pairs.join(","))
        }
    }
}

/// The policies of one vhost, each kind kept in the order objects choose from: highest
/// priority first, then by name.
#[derive(Clone, Debug, Default)]
pub struct VhostPolicies {
    policies: Vec<Arc<Policy>>,
    operator_policies: Vec<Arc<Policy>>,
}

impl VhostPolicies {
    pub fn list(&self, kind: PolicyKind) -> &[Arc<Policy>] {
        match kind {
            PolicyKind::Policy => &self.policies,
            PolicyKind::Operator => &self.operator_policies,
        }
    }

    fn list_mut(&mut self, kind: PolicyKind) -> &mut Vec<Arc<Policy>> {
        match kind {
            PolicyKind::Policy => &mut self.policies,
            PolicyKind::Operator => &mut self.operator_policies,
        }
    }

    pub fn get(&self, kind: PolicyKind, name: &str) -> Option<&Arc<Policy>> {
        self.list(kind).iter().find(|policy| policy.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.operator_policies.is_empty()
    }

    /// Adds a policy or replaces the one of the same kind and name.
    pub fn put(&mut self, policy: Arc<Policy>) {
        let list = self.list_mut(policy.kind);
        list.retain(|existing| existing.name != policy.name);
        list.push(policy);
        list.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
    }

    /// Removes a policy; false if there was none of that name.
    pub fn remove(&mut self, kind: PolicyKind, name: &str) -> bool {
        let list = self.list_mut(kind);
        let before = list.len();
        list.retain(|existing| existing.name != name);
        list.len() != before
    }

    /// The policies a queue named `name` gets.
    pub fn for_queue(&self, name: &str) -> AppliedPolicies {
        AppliedPolicies {
            policy: best(&self.policies, name, true),
            operator: best(&self.operator_policies, name, true),
        }
    }

    /// The policy an exchange named `name` gets (operator policies set nothing exchanges use).
    pub fn for_exchange(&self, name: &str) -> Option<Arc<Policy>> {
        best(&self.policies, name, false)
    }
}

fn best(policies: &[Arc<Policy>], name: &str, queue: bool) -> Option<Arc<Policy>> {
    policies.iter().find(|policy| policy.matches(name, queue)).cloned()
}

/// The policy and operator policy a queue has (each None without one).
#[derive(Clone, Debug, Default)]
pub struct AppliedPolicies {
    pub policy: Option<Arc<Policy>>,
    pub operator: Option<Arc<Policy>>,
}

fn same(a: &Option<Arc<Policy>>, b: &Option<Arc<Policy>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The lower of two optional values, or the one there is.
fn lower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl AppliedPolicies {
    /// The same policies (a re-set policy is a new one, even with equal content).
    pub fn same_as(&self, other: &AppliedPolicies) -> bool {
        same(&self.policy, &other.policy) && same(&self.operator, &other.operator)
    }

    pub fn policy_name(&self) -> &str {
        self.policy.as_ref().map_or("", |policy| &policy.name)
    }

    pub fn operator_policy_name(&self) -> &str {
        self.operator.as_ref().map_or("", |policy| &policy.name)
    }

    /// A numeric key of the two policies merged: the lower value where both set it.
    fn numeric(&self, pick: fn(&PolicySettings) -> Option<u64>) -> Option<u64> {
        let policy = self.policy.as_ref().and_then(|policy| pick(&policy.settings));
        let operator = self.operator.as_ref().and_then(|policy| pick(&policy.settings));
        lower(policy, operator)
    }

    /// The policy and the operator policy merged, as `rabbit_policy:effective_definition`:
    /// the policy's keys (capped by the operator policy where it sets them too), then the
    /// operator policy's other keys.
    pub fn effective_definition(&self) -> Map<String, Value> {
        let mut merged = self.policy.as_ref().map(|policy| policy.definition.clone()).unwrap_or_default();
        if let Some(operator) = &self.operator {
            for (key, value) in &operator.definition {
                let capped = match (merged.get(key).and_then(Value::as_u64), value.as_u64()) {
                    (Some(own), Some(cap)) => Value::from(own.min(cap)),
                    _ => value.clone(),
                };
                merged.insert(key.clone(), capped);
            }
        }
        merged
    }

    /// What a queue with these `arguments` acts on under these policies.
    pub fn queue_args(&self, arguments: &FieldTable) -> QueueArgs {
        let mut args = QueueArgs::from_table(arguments);
        if self.policy.is_none() && self.operator.is_none() {
            return args;
        }
        args.message_ttl_ms = lower(args.message_ttl_ms, self.numeric(|settings| settings.message_ttl_ms));
        let policy_expires = self.numeric(|settings| settings.expires_ms);
        args.expires_ms = match args.queue_type {
            // `rabbit_quorum_queue:ra_machine_config`: the policy's expiry wins over the argument.
            QueueType::Quorum => policy_expires.or(args.expires_ms),
            QueueType::Classic | QueueType::Stream => lower(args.expires_ms, policy_expires),
        };
        args.max_length = lower(args.max_length, self.numeric(|settings| settings.max_length));
        args.max_length_bytes = lower(args.max_length_bytes, self.numeric(|settings| settings.max_length_bytes));
        args.delivery_limit = lower(args.delivery_limit, self.numeric(|settings| settings.delivery_limit));
        let Some(policy) = &self.policy else { return args };
        let table = arguments.inner();
        // A classic queue's own x-overflow wins; a quorum queue's policy wins, and takes
        // reject-publish-dlx as drop-head (RabbitMQ 3.10 logs a warning and does the same).
        if let Some(overflow) = policy.settings.overflow {
            match args.queue_type {
                QueueType::Classic if table.contains_key("x-overflow") => {}
                QueueType::Classic | QueueType::Stream => args.overflow = overflow,
                QueueType::Quorum if overflow == Overflow::RejectPublishDlx => args.overflow = Overflow::DropHead,
                QueueType::Quorum => args.overflow = overflow,
            }
        }
        // The exchange and the routing key are looked up apart: an argument's routing key
        // goes with a policy's exchange, and the other way round.
        let exchange = args
            .dead_letter
            .as_ref()
            .map(|target| target.exchange.clone())
            .or_else(|| policy.settings.dead_letter_exchange.clone());
        let routing_key = match table.get("x-dead-letter-routing-key") {
            Some(value) => super::queue_args::text(value),
            None => policy.settings.dead_letter_routing_key.clone(),
        };
        args.dead_letter = exchange.map(|exchange| Arc::new(DeadLetterTarget { exchange, routing_key }));
        args
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
