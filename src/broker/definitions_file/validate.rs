//! Checks the values of a definitions file as RabbitMQ 3.10's import would, before anything is
//! applied, and reports every problem at once:
//!
//! - names: users, vhosts, queues, exchanges, policies and parameters are named, and a binding
//!   has a destination; nothing is defined twice (which one RabbitMQ would keep is a race);
//!   a binding's source is not the default exchange (RabbitMQ refuses it: 403).
//! - users: a cleartext `password` and a `password_hash` not both; a non-empty hash decodes
//!   with its `hashing_algorithm`, which is one of RabbitMQ's three; limits are
//!   `max-connections` or `max-channels`.
//! - vhosts: limits are `max-connections` or `max-queues`; `default_queue_type` is `classic`
//!   (RabbitMQ also knows `quorum` and `stream`, which this broker does not have).
//! - permissions, topic permissions and policy patterns compile as regular expressions.
//! - policies: `apply-to` is `all`, `queues` or `exchanges`; the definition is not empty. The
//!   definition's keys are not checked here.
//! - queues: arguments pass the same checks as queue.declare (`queue_args::validate`, with
//!   RabbitMQ's texts), the type is classic or quorum, and a quorum queue (by `x-queue-type`, as
//!   RabbitMQ's import reads it) is durable and not auto-delete; exchanges: a type this broker routes, and an
//!   `alternate-exchange` that is a string.
//!
//! Not checked: whether a permission's user or vhost, or a binding's source and destination,
//! exist. They may already exist on the broker the file is imported into, which this module
//! does not see; the importer checks them against the broker, as RabbitMQ does (`no_such_user`,
//! `no_such_vhost`, 404).
//!
//! Patterns: RabbitMQ matches them with PCRE, this broker with regex-lite, which has no
//! look-around (`(?=`, `(?!`, `(?<=`, `(?<!`), back-references (`\1`), atomic groups (`(?>`),
//! possessive quantifiers (`a*+`), `\Q…\E` quoting or Unicode classes (`\p{L}`). Such a pattern
//! is refused with that explanation rather than matched differently. One accepted pattern
//! matches differently: PCRE's `$` also matches before a final newline, regex-lite's only at
//! the end (names with a trailing newline are unusual). The empty pattern, which RabbitMQ reads
//! as "nothing", compiles; the matcher must keep that meaning.

use std::collections::HashMap;

use super::{DefinitionsFile, DefinitionsFileError, Problem, User};
use crate::broker::passwords::{HashAlgorithm, PasswordHash};
use crate::broker::queue_args::{self, QueueFlags};
use crate::broker::routing::ExchangeKind;

const USER_LIMITS: &[&str] = &["max-connections", "max-channels"];
const VHOST_LIMITS: &[&str] = &["max-connections", "max-queues"];
const POLICY_APPLY_TO: &[&str] = &["all", "queues", "exchanges"];

/// Every problem RabbitMQ's import would meet in `definitions`, or Ok.
pub(super) fn check(definitions: &DefinitionsFile) -> Result<(), DefinitionsFileError> {
    let mut check = Checker::default();
    check_users(&mut check, definitions);
    check_vhosts(&mut check, definitions);
    check_access(&mut check, definitions);
    check_parameters_and_policies(&mut check, definitions);
    check_queues_and_exchanges(&mut check, definitions);
    check_bindings(&mut check, definitions);
    if check.problems.is_empty() {
        Ok(())
    } else {
        Err(DefinitionsFileError::Invalid(check.problems))
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
    /// The first item of each kind and identity, to report a second one.
    seen: HashMap<(&'static str, String), String>,
}

impl Checker {
    fn problem(&mut self, path: String, message: impl Into<String>) {
        self.problems.push(Problem { path, message: message.into() });
    }

    fn named(&mut self, path: String, field: &str, value: &str) {
        if value.is_empty() {
            self.problem(format!("{path}.{field}"), "empty, a name is required");
        }
    }

    /// Reports `path` when an item of the same kind and identity came before.
    fn unique(&mut self, kind: &'static str, identity: String, path: String) {
        match self.seen.get(&(kind, identity.clone())) {
            Some(first) => {
                let message = format!("{kind} {identity} is already defined by {first}");
                self.problems.push(Problem { path, message });
            }
            None => {
                self.seen.insert((kind, identity), path);
            }
        }
    }

    fn pattern(&mut self, path: String, pattern: &str) {
        if let Err(error) = regex_lite::Regex::new(pattern) {
            let pcre_only = ["(?=", "(?!", "(?<=", "(?<!", "(?>", "*+", "++", "?+", "}+", "\\Q", "\\p", "\\P"]
                .iter()
                .any(|syntax| pattern.contains(syntax))
                || (1..=9).any(|digit| pattern.contains(&format!("\\{digit}")));
            let note = if pcre_only {
                " (RabbitMQ's PCRE accepts look-around, back-references, atomic groups, possessive quantifiers, \\Q…\\E and \\p{…}; this broker's matcher does not)"
            } else {
                ""
            };
            let message = format!("'{pattern}' is not a regular expression this broker can match: {error}{note}");
            self.problem(path, message.replace('\n', " "));
        }
    }

    fn limits(&mut self, path: String, limits: &super::Limits, known: &[&str]) {
        for name in limits.keys().filter(|name| !known.contains(&name.as_str())) {
            let message = format!("unknown limit, expected one of {}", known.join(", "));
            self.problem(format!("{path}.limits.{name}"), message);
        }
    }
}

fn check_users(check: &mut Checker, definitions: &DefinitionsFile) {
    for (index, user) in definitions.users.iter().enumerate() {
        let path = format!("users[{index}]");
        check.named(path.clone(), "name", &user.name);
        check.unique("user", format!("'{}'", user.name), path.clone());
        if let Err(message) = password_problem(user) {
            check.problem(path.clone(), message);
        }
        check.limits(path, &user.limits, USER_LIMITS);
    }
}

/// Whether the user's password fields can be stored, without hashing a cleartext password.
fn password_problem(user: &User) -> Result<(), String> {
    let hash = match (user.password_hash.as_deref(), user.password.as_deref()) {
        (Some(_), Some(_)) => return Err("both password and password_hash are given, RabbitMQ takes one".into()),
        (Some(hash), None) if !hash.is_empty() => hash,
        _ => return Ok(()),
    };
    let Some(algorithm) = HashAlgorithm::from_rabbit_name(&user.hashing_algorithm) else {
        let known = [HashAlgorithm::Sha256, HashAlgorithm::Sha512, HashAlgorithm::Md5].map(HashAlgorithm::rabbit_name);
        return Err(format!(
            "unknown hashing_algorithm '{}', expected one of {}",
            user.hashing_algorithm,
            known.join(", ")
        ));
    };
    PasswordHash::from_base64(algorithm, hash).map(drop)
}

fn check_vhosts(check: &mut Checker, definitions: &DefinitionsFile) {
    for (index, vhost) in definitions.vhosts.iter().enumerate() {
        let path = format!("vhosts[{index}]");
        check.named(path.clone(), "name", &vhost.name);
        check.unique("vhost", format!("'{}'", vhost.name), path.clone());
        check.limits(path.clone(), &vhost.limits, VHOST_LIMITS);
        match vhost.default_queue_type.as_deref() {
            None | Some("classic") => {}
            Some(kind @ ("quorum" | "stream")) => check.problem(
                format!("{path}.metadata.default_queue_type"),
                format!("{kind} queues are not supported by this broker (only 'classic')"),
            ),
            Some(other) => {
                check.problem(format!("{path}.metadata.default_queue_type"), format!("invalid queue type '{other}'"))
            }
        }
    }
}

fn check_access(check: &mut Checker, definitions: &DefinitionsFile) {
    for (index, permission) in definitions.permissions.iter().enumerate() {
        let path = format!("permissions[{index}]");
        check.named(path.clone(), "user", &permission.user);
        check.named(path.clone(), "vhost", &permission.vhost);
        let identity = format!("of user '{}' in vhost '{}'", permission.user, permission.vhost);
        check.unique("permission", identity, path.clone());
        for (field, pattern) in
            [("configure", &permission.configure), ("write", &permission.write), ("read", &permission.read)]
        {
            check.pattern(format!("{path}.{field}"), pattern);
        }
    }
    for (index, permission) in definitions.topic_permissions.iter().enumerate() {
        let path = format!("topic_permissions[{index}]");
        check.named(path.clone(), "user", &permission.user);
        check.named(path.clone(), "vhost", &permission.vhost);
        check.named(path.clone(), "exchange", &permission.exchange);
        let identity = format!(
            "of user '{}' on exchange '{}' in vhost '{}'",
            permission.user, permission.exchange, permission.vhost
        );
        check.unique("topic permission", identity, path.clone());
        check.pattern(format!("{path}.write"), &permission.write);
        check.pattern(format!("{path}.read"), &permission.read);
    }
}

fn check_parameters_and_policies(check: &mut Checker, definitions: &DefinitionsFile) {
    for (index, parameter) in definitions.parameters.iter().enumerate() {
        let path = format!("parameters[{index}]");
        check.named(path.clone(), "vhost", &parameter.vhost);
        check.named(path.clone(), "component", &parameter.component);
        check.named(path.clone(), "name", &parameter.name);
        let identity = format!("'{}/{}' in vhost '{}'", parameter.component, parameter.name, parameter.vhost);
        check.unique("parameter", identity, path);
    }
    for (index, parameter) in definitions.global_parameters.iter().enumerate() {
        let path = format!("global_parameters[{index}]");
        check.named(path.clone(), "name", &parameter.name);
        check.unique("global parameter", format!("'{}'", parameter.name), path);
    }
    for (index, policy) in definitions.policies.iter().enumerate() {
        let path = format!("policies[{index}]");
        check.named(path.clone(), "vhost", &policy.vhost);
        check.named(path.clone(), "name", &policy.name);
        check.unique("policy", format!("'{}' in vhost '{}'", policy.name, policy.vhost), path.clone());
        check.pattern(format!("{path}.pattern"), &policy.pattern);
        if !POLICY_APPLY_TO.contains(&policy.apply_to.as_str()) {
            let message =
                format!("apply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'", policy.apply_to);
            check.problem(format!("{path}.apply-to"), message);
        }
        if policy.definition.is_empty() {
            check.problem(format!("{path}.definition"), "no policy provided");
        }
    }
}

fn check_queues_and_exchanges(check: &mut Checker, definitions: &DefinitionsFile) {
    for (index, queue) in definitions.queues.iter().enumerate() {
        let path = format!("queues[{index}]");
        check.named(path.clone(), "vhost", &queue.vhost);
        check.named(path.clone(), "name", &queue.name);
        check.unique("queue", format!("'{}' in vhost '{}'", queue.name, queue.vhost), path.clone());
        if let Err(error) = queue_args::validate(&queue.arguments, &queue.name, &queue.vhost) {
            check.problem(format!("{path}.arguments"), error.reply_text);
        } else if !matches!(queue.queue_type.as_str(), "classic" | "quorum" | "stream") {
            let message = format!(
                "{} queues are not supported by this broker (only 'classic', 'quorum' and 'stream')",
                queue.queue_type
            );
            check.problem(format!("{path}.type"), message);
        } else {
            let flags = QueueFlags { durable: queue.durable, exclusive: false, auto_delete: queue.auto_delete };
            if let Err(error) = queue_args::check_flags(&queue.arguments, flags, &queue.name, &queue.vhost) {
                check.problem(path.clone(), error.reply_text);
            }
        }
    }
    for (index, exchange) in definitions.exchanges.iter().enumerate() {
        let path = format!("exchanges[{index}]");
        check.named(path.clone(), "vhost", &exchange.vhost);
        check.named(path.clone(), "name", &exchange.name);
        check.unique("exchange", format!("'{}' in vhost '{}'", exchange.name, exchange.vhost), path.clone());
        match ExchangeKind::parse(&exchange.exchange_type) {
            None => {
                check.problem(format!("{path}.type"), format!("unknown exchange type '{}'", exchange.exchange_type))
            }
            Some(ExchangeKind::DelayedMessage) => {
                if let Err(error) = crate::broker::delayed::validate_arguments(&exchange.arguments) {
                    check.problem(format!("{path}.arguments"), error.reply_text);
                }
            }
            Some(_) => {}
        }
        if let Err(error) = queue_args::validate_exchange(&exchange.arguments, &exchange.name, &exchange.vhost) {
            check.problem(format!("{path}.arguments"), error.reply_text);
        }
    }
}

fn check_bindings(check: &mut Checker, definitions: &DefinitionsFile) {
    for (index, binding) in definitions.bindings.iter().enumerate() {
        let path = format!("bindings[{index}]");
        check.named(path.clone(), "vhost", &binding.vhost);
        check.named(path.clone(), "destination", &binding.destination);
        if binding.source.is_empty() {
            let message = "binding the default exchange is not permitted (RabbitMQ refuses it with 403)";
            check.problem(format!("{path}.source"), message);
        }
    }
}
