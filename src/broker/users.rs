//! Users, their tags and their permissions per vhost, as RabbitMQ's internal auth backend
//! keeps them, and the access checks of its channel.
//!
//! A permission is three regular expressions (configure, write, read) matched, unanchored,
//! against a resource name, as RabbitMQ matches them; an empty pattern means `^$`. The default
//! exchange is checked under the name `amq.default`. Patterns are compiled once, when they
//! are set, and shared by every shard through the definitions snapshot.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::error::{AmqpError, ACCESS_REFUSED};
use super::passwords::PasswordHash;

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    pub tags: Vec<String>,
    /// vhost → permissions.
    pub permissions: HashMap<String, Arc<Permissions>>,
    pub limits: UserLimits,
}

/// RabbitMQ's user limits that SpateMQ applies (`set_user_limits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub max_connections: Option<u32>,
}

/// RabbitMQ's vhost limits (`set_vhost_limits`): None is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VhostLimits {
    pub max_connections: Option<u32>,
    pub max_queues: Option<u32>,
}

/// Reads RabbitMQ's limit JSON (`{"max-connections": 10, "max-queues": -1}`): a negative value
/// is no limit; `known` names the keys allowed. Returns (key, limit) pairs.
pub fn parse_limits(json: &str, known: &[&str]) -> Result<Vec<(String, Option<u32>)>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("limits must be a JSON object: {error}"))?;
    let object = value.as_object().ok_or("limits must be a JSON object, such as {\"max-connections\": 10}")?;
    let mut limits = Vec::new();
    for (key, value) in object {
        if !known.contains(&key.as_str()) {
            return Err(format!("unknown limit '{key}': the limits are {}", known.join(", ")));
        }
        let number = value.as_i64().ok_or_else(|| format!("limit '{key}' must be an integer, got {value}"))?;
        let limit = if number < 0 { None } else { Some(u32::try_from(number).unwrap_or(u32::MAX)) };
        limits.push((key.clone(), limit));
    }
    Ok(limits)
}

impl User {
    pub fn new(name: &str, password: PasswordHash, tags: Vec<String>) -> User {
        User { name: name.to_string(), password, tags, permissions: HashMap::new(), limits: UserLimits::default() }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|own| own == tag)
    }
}

/// One resource-name pattern, compiled.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex_lite::Regex,
}

impl Pattern {
    /// Compiles `source`; the error says why the expression is not valid.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let effective = if source.is_empty() { "^$" } else { source };
        let regex = regex_lite::Regex::new(effective).map_err(|error| error.to_string())?;
        Ok(Pattern { source: source.to_string(), regex })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

#[derive(Clone, Debug)]
pub struct Permissions {
    pub configure: Pattern,
    pub write: Pattern,
    pub read: Pattern,
}

impl Permissions {
    /// Compiles the three patterns; the error names the first invalid one, as
    /// `rabbitmqctl set_permissions` reports it.
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permissions, String> {
        let compile =
            |source: &str| Pattern::new(source).map_err(|why| format!("invalid regular expression '{source}': {why}"));
        Ok(Permissions { configure: compile(configure)?, write: compile(write)?, read: compile(read)? })
    }

    /// Everything: `.*` for each of the three.
    pub fn all() -> Permissions {
        Permissions::new(".*", ".*", ".*").unwrap_or_else(|_| unreachable!(".* is a valid expression"))
    }

    /// The three patterns as they were set: configure, write, read.
    pub fn sources(&self) -> [&str; 3] {
        [self.configure.source(), self.write.source(), self.read.source()]
    }

    pub fn pattern(&self, access: Access) -> &Pattern {
        match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Exchange,
    Queue,
}

impl ResourceKind {
    fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Exchange => "exchange",
            ResourceKind::Queue => "queue",
        }
    }
}

/// RabbitMQ's access check for one resource: `permissions` are the user's in `vhost` (None:
/// the user has none there, so everything is refused).
pub fn check_access(
    permissions: Option<&Permissions>,
    access: Access,
    kind: ResourceKind,
    name: &str,
    vhost: &str,
    user: &str,
) -> Result<(), AmqpError> {
    let name = match (kind, name) {
        (ResourceKind::Exchange, "") => "amq.default",
        _ => name,
    };
    match permissions {
        Some(permissions) if permissions.pattern(access).matches(name) => Ok(()),
        _ => Err(AmqpError::new(
            ACCESS_REFUSED,
            format!("access to {} '{name}' in vhost '{vhost}' refused for user '{user}'", kind.as_str()),
        )),
    }
}

/// Users that may log in from loopback addresses only (RabbitMQ's `loopback_users`), over
/// AMQP and the management API alike.
pub const LOOPBACK_USERS: &[&str] = &["guest"];

/// A client's rights, carried with a declare to the definitions writer for the checks that
/// depend on what only the writer knows: the name of a server-named queue, and whether the
/// queue or exchange is new (then its dead-letter or alternate exchange is checked too).
/// Requests that come from the operator carry none.
#[derive(Clone, Debug)]
pub struct Grant {
    pub user: String,
    pub permissions: Option<Arc<Permissions>>,
}

impl Grant {
    pub fn check(&self, access: Access, kind: ResourceKind, name: &str, vhost: &str) -> Result<(), AmqpError> {
        check_access(self.permissions.as_deref(), access, kind, name, vhost, &self.user)
    }
}

/// Parses a tag list as `rabbitmqctl set_user_tags` and definitions files give it: separate
/// words, or one comma-separated string. Empty entries are dropped.
pub fn parse_tags<'a>(words: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for word in words {
        for tag in word.split(',').map(str::trim).filter(|tag| !tag.is_empty()) {
            if !tags.iter().any(|own| own == tag) {
                tags.push(tag.to_string());
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_unanchored_and_empty_means_nothing_but_the_empty_name() {
        let permissions = Permissions::new("^app\\.", "", "logs").expect("valid");
        assert!(permissions.configure.matches("app.jobs"));
        assert!(!permissions.configure.matches("x.app.jobs"));
        assert!(!permissions.write.matches("anything"));
        assert!(permissions.write.matches(""));
        assert!(permissions.read.matches("app-logs-1"), "unanchored, as RabbitMQ's re:run");
    }

    #[test]
    fn an_invalid_pattern_is_refused_with_the_reason() {
        let error = Permissions::new("(", ".*", ".*").expect_err("invalid");
        assert!(error.starts_with("invalid regular expression '(': "), "{error}");
    }

    #[test]
    fn refusals_use_rabbitmqs_text_and_the_default_exchange_is_amq_default() {
        let permissions = Permissions::new("^$", "^amq\\.default$", "^$").expect("valid");
        assert!(check_access(Some(&permissions), Access::Write, ResourceKind::Exchange, "", "/", "bob").is_ok());
        let error =
            check_access(Some(&permissions), Access::Read, ResourceKind::Queue, "q1", "/", "bob").expect_err("refused");
        assert_eq!(error.reply_code, ACCESS_REFUSED);
        assert_eq!(error.reply_text, "ACCESS_REFUSED - access to queue 'q1' in vhost '/' refused for user 'bob'");
        let error =
            check_access(None, Access::Configure, ResourceKind::Exchange, "", "v", "bob").expect_err("no permissions");
        assert_eq!(
            error.reply_text,
            "ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'v' refused for user 'bob'"
        );
    }

    #[test]
    fn tags_parse_from_words_or_commas() {
        assert_eq!(parse_tags(["administrator", "monitoring"]), vec!["administrator", "monitoring"]);
        assert_eq!(parse_tags(["administrator, monitoring,,"]), vec!["administrator", "monitoring"]);
        assert!(parse_tags([""]).is_empty());
    }
}
