//! `/api/bindings[/{vhost}[/e/{source}/q|e/{destination}[/{properties_key}]]]` and the
//! binding lists of one queue or exchange. A binding is named in URLs by its
//! `properties_key`: the routing key (`~` when empty) when it has no arguments, else the
//! routing key, `~` and a hash of the arguments. Listings include the default exchange's
//! implicit binding to each queue, as RabbitMQ's do.

use std::collections::HashMap;

use amq_protocol::types::FieldTable;
use base64::Engine;
use serde_json::{json, Value};

use super::api::{json_response, ApiError, ApiResult, Call};
use super::exchanges::from_path;
use super::http::Response;
use super::input::Body;
use super::listing;
use super::queues::check;
use crate::broker::definitions_file::field_table_to_json;
use crate::broker::requests::{AdminRequest, Binding};
use crate::broker::snapshot::Vhost;
use crate::broker::users::{Access, ResourceKind};
use crate::ids::{ConnId, Destination};

/// RabbitMQ's order of bindings: by source, then destination (exchanges before queues).
const ORDER: &[&str] = &["vhost", "source", "destination_type", "destination", "routing_key", "properties_key"];

/// One binding as the API shows it.
struct Row {
    source: String,
    destination: String,
    destination_is_queue: bool,
    routing_key: String,
    arguments: FieldTable,
}

impl Row {
    fn properties_key(&self) -> String {
        properties_key(&self.routing_key, &self.arguments)
    }

    fn to_json(&self, vhost: &str) -> Value {
        json!({
            "source": self.source,
            "vhost": vhost,
            "destination": self.destination,
            "destination_type": if self.destination_is_queue { "queue" } else { "exchange" },
            "routing_key": self.routing_key,
            "arguments": field_table_to_json(&self.arguments),
            "properties_key": self.properties_key(),
        })
    }
}

/// RabbitMQ's binding name in URLs: the routing key quoted as `quote_plus` quotes it (`*` is
/// `%2A`), or `~` when it is empty, and with arguments `~` and a hash of them. The hash is
/// this broker's own (RabbitMQ's is `erlang:phash2`); it only has to name the same binding
/// in a later request.
pub fn properties_key(routing_key: &str, arguments: &FieldTable) -> String {
    let key = quote_plus(routing_key);
    if arguments.inner().is_empty() {
        return if key.is_empty() { "~".to_string() } else { key };
    }
    let encoded = field_table_to_json(arguments).to_string();
    let hash = crc32c::crc32c(encoded.as_bytes()).to_be_bytes();
    format!("{key}~{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash))
}

/// Percent-encodes all but letters, digits and `.-~_`; a space becomes `+`.
fn quote_plus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'~' | b'_' => out.push(byte as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Whether a key from a URL (decoded once by the router) names this binding: clients send the
/// listed key quoted once more, or as it was before quoting.
fn key_matches(row: &Row, given: &str) -> bool {
    let own = row.properties_key();
    own == given || super::api::percent_decode(&own.replace('+', " ")) == given
}

/// Every binding of a vhost, the default exchange's implicit ones first.
fn rows(vhost: &Vhost) -> Vec<Row> {
    let queue_names: HashMap<_, _> = vhost.queues.values().map(|queue| (queue.id, queue.name.clone())).collect();
    let mut rows: Vec<Row> = Vec::new();
    let mut queues: Vec<&String> = vhost.queues.keys().collect();
    queues.sort();
    for queue in queues {
        rows.push(Row {
            source: String::new(),
            destination: queue.clone(),
            destination_is_queue: true,
            routing_key: queue.clone(),
            arguments: FieldTable::default(),
        });
    }
    let mut explicit = Vec::new();
    for exchange in vhost.exchanges.values().filter(|exchange| !exchange.name.is_empty()) {
        for (destination, routing_key, arguments) in exchange.table.bindings() {
            let (destination, destination_is_queue) = match destination {
                Destination::Queue(id) => (queue_names.get(&id).cloned(), true),
                Destination::Exchange(id) => (vhost.exchange_names.get(&id).cloned(), false),
            };
            let Some(destination) = destination else { continue };
            explicit.push(Row {
                source: exchange.name.clone(),
                destination,
                destination_is_queue,
                routing_key: routing_key.to_string(),
                arguments: arguments.clone(),
            });
        }
    }
    explicit.sort_by(|a, b| {
        (&a.source, !a.destination_is_queue, &a.destination, &a.routing_key).cmp(&(
            &b.source,
            !b.destination_is_queue,
            &b.destination,
            &b.routing_key,
        ))
    });
    rows.extend(explicit);
    rows
}

fn vhost_rows<'a>(call: &'a Call, vhost: &str) -> Result<(&'a Vhost, Vec<Row>), ApiError> {
    call.caller.require_vhost(vhost)?;
    let found = call.caller.snapshot.vhost(vhost).ok_or_else(ApiError::not_found)?;
    Ok((found, rows(found)))
}

pub fn bindings(call: &Call) -> ApiResult {
    match call.segments.as_slice() {
        [_] => {
            only_get(call)?;
            let mut names: Vec<&String> =
                call.caller.snapshot.vhosts.keys().filter(|name| call.caller.sees_vhost(name)).collect();
            names.sort();
            let mut items = Vec::new();
            for name in names {
                if let Some(vhost) = call.caller.snapshot.vhost(name) {
                    items.extend(rows(vhost).iter().map(|row| row.to_json(name)));
                }
            }
            listing::reply(call, items, ORDER)
        }
        [_, vhost] => {
            only_get(call)?;
            let (_, rows) = vhost_rows(call, vhost)?;
            listing::reply(call, rows.iter().map(|row| row.to_json(vhost)).collect(), ORDER)
        }
        [_, vhost, e, source, kind, destination, rest @ ..] if e == "e" && (kind == "q" || kind == "e") => {
            let pair = Pair {
                vhost,
                source: from_path(source),
                destination: if kind == "q" { destination } else { from_path(destination) },
                destination_is_queue: kind == "q",
            };
            match (rest, call.method()) {
                ([], "GET") => pair.list(call),
                ([], "POST") => pair.create(call),
                ([key], "GET") => pair.show(call, key),
                ([key], "DELETE") => pair.delete(call, key),
                ([] | [_], _) => Err(ApiError::method_not_allowed()),
                _ => Err(ApiError::not_found()),
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

/// GET /api/queues/{vhost}/{name}/bindings.
pub fn of_queue(call: &Call, vhost: &str, name: &str) -> ApiResult {
    let (found, rows) = vhost_rows(call, vhost)?;
    if !found.queues.contains_key(name) {
        return Err(ApiError::not_found());
    }
    let items = rows.iter().filter(|row| row.destination_is_queue && row.destination == name);
    listing::reply(call, items.map(|row| row.to_json(vhost)).collect(), ORDER)
}

/// GET /api/exchanges/{vhost}/{name}/bindings/source (or destination).
pub fn of_exchange(call: &Call, vhost: &str, name: &str, as_source: bool) -> ApiResult {
    let (found, rows) = vhost_rows(call, vhost)?;
    if !found.exchanges.contains_key(name) {
        return Err(ApiError::not_found());
    }
    let items = rows.iter().filter(|row| match as_source {
        true => row.source == name,
        false => !row.destination_is_queue && row.destination == name,
    });
    listing::reply(call, items.map(|row| row.to_json(vhost)).collect(), ORDER)
}

/// The two ends named in a binding URL.
struct Pair<'a> {
    vhost: &'a str,
    source: &'a str,
    destination: &'a str,
    destination_is_queue: bool,
}

impl Pair<'_> {
    fn matching(&self, call: &Call) -> Result<Vec<Row>, ApiError> {
        let (found, rows) = vhost_rows(call, self.vhost)?;
        let destination_exists = match self.destination_is_queue {
            true => found.queues.contains_key(self.destination),
            false => found.exchanges.contains_key(self.destination),
        };
        if !found.exchanges.contains_key(self.source) || !destination_exists {
            return Err(ApiError::not_found());
        }
        Ok(rows
            .into_iter()
            .filter(|row| {
                row.source == self.source
                    && row.destination == self.destination
                    && row.destination_is_queue == self.destination_is_queue
            })
            .collect())
    }

    fn list(&self, call: &Call) -> ApiResult {
        let rows = self.matching(call)?;
        listing::reply(call, rows.iter().map(|row| row.to_json(self.vhost)).collect(), ORDER)
    }

    fn show(&self, call: &Call, key: &str) -> ApiResult {
        let rows = self.matching(call)?;
        let row = rows.iter().find(|row| key_matches(row, key)).ok_or_else(ApiError::not_found)?;
        Ok(json_response(&row.to_json(self.vhost)))
    }

    /// The checks a queue.bind / exchange.bind makes: write on the destination, read on the
    /// source (the default exchange is refused by the writer).
    fn check(&self, call: &Call) -> Result<(), ApiError> {
        let kind = if self.destination_is_queue { ResourceKind::Queue } else { ResourceKind::Exchange };
        check(call, self.vhost, Access::Write, kind, self.destination)?;
        if !self.source.is_empty() {
            check(call, self.vhost, Access::Read, ResourceKind::Exchange, self.source)?;
        }
        Ok(())
    }

    fn binding(&self, call: &Call, routing_key: String, arguments: FieldTable) -> Binding {
        Binding {
            vhost: self.vhost.to_string(),
            source: self.source.to_string(),
            destination: self.destination.to_string(),
            destination_is_queue: self.destination_is_queue,
            routing_key,
            arguments,
            conn: ConnId { shard: 0, local: call.context.broker.holder().conn.local },
        }
    }

    fn create(&self, call: &Call) -> ApiResult {
        call.caller.require_vhost(self.vhost)?;
        let body = Body::new(call.json_body()?)?;
        let routing_key = body.string("routing_key")?.unwrap_or_default();
        let arguments = body.arguments()?;
        self.check(call)?;
        let key = properties_key(&routing_key, &arguments);
        let binding = self.binding(call, routing_key, arguments);
        call.context.broker.admin(AdminRequest::Bind(binding))?;
        Ok(Response::empty(201).with_header("location", key))
    }

    fn delete(&self, call: &Call, key: &str) -> ApiResult {
        let rows = self.matching(call)?;
        let row = rows.into_iter().find(|row| key_matches(row, key)).ok_or_else(ApiError::not_found)?;
        // The default exchange's implicit bindings cannot be removed: the writer refuses them.
        self.check(call)?;
        let binding = self.binding(call, row.routing_key, row.arguments);
        call.context.broker.admin(AdminRequest::Unbind(binding))?;
        Ok(Response::empty(204))
    }
}

fn only_get(call: &Call) -> Result<(), ApiError> {
    super::accounts::only_get(call)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::AMQPValue;

    #[test]
    fn properties_key_is_the_routing_key_or_a_tilde_without_arguments() {
        assert_eq!(properties_key("", &FieldTable::default()), "~");
        assert_eq!(properties_key("a.b", &FieldTable::default()), "a.b");
        assert_eq!(properties_key("a.* b#", &FieldTable::default()), "a.%2A+b%23");
        let mut arguments = FieldTable::default();
        arguments.insert("x-match".into(), AMQPValue::LongString("all".into()));
        let key = properties_key("k", &arguments);
        assert!(key.starts_with("k~") && key.len() > 2, "{key}");
        assert_eq!(key, properties_key("k", &arguments), "stable");
    }
}
