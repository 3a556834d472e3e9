//! `/api/policies[/{vhost}[/{name}]]` and `/api/operator-policies[/{vhost}[/{name}]]`, as
//! RabbitMQ 3.10's `rabbit_mgmt_wm_policies` / `rabbit_mgmt_wm_policy` (and their operator
//! twins) answer them:
//! - listings: any management user, showing the vhosts it may log in to (an administrator:
//!   all), lowest priority first;
//! - one policy (GET, PUT, DELETE): an administrator, or a `policymaker` with permissions in
//!   the vhost; operator policies: administrators only;
//! - PUT takes `pattern`, `definition`, `priority` (a JSON number, 0 if absent) and
//!   `apply-to` (`all` if absent), validated by `Policy::parse` with RabbitMQ's "Validation
//!   failed" texts; 201 for a new policy, 204 for a replaced one; DELETE 204.
//!
//! A change is made by the definitions writer, and PUT/DELETE answer only once every shard
//! has applied it (`CatchUp`), as `spatemq ctl set_policy` does: a client publishing next finds
//! the new limits.

use serde_json::{Map, Value};

use super::api::{created, json_response, ApiError, ApiResult, Call};
use super::listing;
use crate::broker::control::AccountChange;
use crate::broker::policy::{
    erlang_term, validate_definition, validation_failed, ApplyTo, Policy, PolicyInput, PolicyKind,
};

pub fn policies(call: &Call, kind: PolicyKind) -> ApiResult {
    let snapshot = &call.caller.snapshot;
    match call.segments.as_slice() {
        [_] => {
            super::accounts::only_get(call)?;
            let mut items = Vec::new();
            for vhost in snapshot.vhosts.values().filter(|vhost| logs_in(call, &vhost.name)) {
                items.extend(vhost.policies.list(kind).iter().map(|policy| policy.to_json()));
            }
            listing::reply(call, items, &["priority", "vhost", "name"])
        }
        [_, vhost] => {
            super::accounts::only_get(call)?;
            call.caller.require_vhost(vhost)?;
            let found = snapshot.vhost(vhost).ok_or_else(ApiError::not_found)?;
            let items = found.policies.list(kind).iter().map(|policy| policy.to_json()).collect();
            listing::reply(call, items, &["priority", "name"])
        }
        [_, vhost, name] => {
            authorise_one(call, kind, vhost)?;
            let existing = snapshot.vhost(vhost).and_then(|found| found.policies.get(kind, name).cloned());
            match call.method() {
                "GET" => Ok(json_response(&existing.ok_or_else(ApiError::not_found)?.to_json())),
                "PUT" => put(call, kind, vhost, name, existing.is_none()),
                "DELETE" => {
                    if existing.is_none() {
                        return Err(ApiError::not_found());
                    }
                    let change = AccountChange::ClearPolicy { kind, vhost: vhost.clone(), name: name.clone() };
                    call.context.broker.change(change)?;
                    Ok(created(false))
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

/// RabbitMQ's `list_login_vhosts`: an administrator sees every vhost, others those they
/// have permissions in (being `monitoring` does not widen it here).
fn logs_in(call: &Call, vhost: &str) -> bool {
    call.caller.is_admin() || call.caller.user.permissions.contains_key(vhost)
}

/// `is_authorized_policies` (a policymaker with access to the vhost, or an administrator;
/// a missing vhost is left to the 404 that follows) and `is_authorized_admin` for operator
/// policies.
fn authorise_one(call: &Call, kind: PolicyKind, vhost: &str) -> Result<(), ApiError> {
    if kind == PolicyKind::Operator {
        return call.caller.require_admin();
    }
    let caller = &call.caller;
    let vhost_ok = caller.snapshot.vhost(vhost).is_none() || caller.user.permissions.contains_key(vhost);
    if caller.is_admin() || (caller.user.has_tag("policymaker") && vhost_ok) {
        return Ok(());
    }
    Err(ApiError::not_authorised("User not authorised to access object"))
}

fn put(call: &Call, kind: PolicyKind, vhost: &str, name: &str, new: bool) -> ApiResult {
    if call.caller.snapshot.vhost(vhost).is_none() {
        return Err(ApiError::new(404, "not_found", "vhost_not_found"));
    }
    let Value::Object(body) = call.json_body()? else { return Err(ApiError::bad_request("not_json")) };
    let missing: Vec<&str> = ["pattern", "definition"].into_iter().filter(|key| !body.contains_key(*key)).collect();
    if !missing.is_empty() {
        // RabbitMQ prints its `[{key_missing, pattern}]` term as the reason.
        let terms: Vec<String> = missing.iter().map(|key| format!("{{key_missing,{key}}}")).collect();
        return Err(ApiError::bad_request(format!("[{}]", terms.join(","))));
    }
    let policy = parse(kind, vhost, name, &body).map_err(|reasons| {
        let reason = validation_failed(&reasons.join("\n"));
        // RabbitMQ escapes `<` and `>` in a policy's reason, not in an operator policy's.
        match kind {
            PolicyKind::Policy => ApiError::bad_request(reason.replace('<', "&lt;").replace('>', "&gt;")),
            PolicyKind::Operator => ApiError::bad_request(reason),
        }
    })?;
    call.context.broker.change(AccountChange::SetPolicy(Box::new(policy)))?;
    Ok(created(new))
}

/// The policy in a PUT body, or RabbitMQ's reasons for refusing it, one per invalid field in
/// the order RabbitMQ lists them: definition, apply-to, pattern, priority.
fn parse(kind: PolicyKind, vhost: &str, name: &str, body: &Map<String, Value>) -> Result<Policy, Vec<String>> {
    let empty = Map::new();
    let (definition, definition_error) = match &body["definition"] {
        Value::Object(definition) => (definition, validate_definition(definition, kind).err()),
        other => (&empty, Some(format!("definition must be a dictionary: {}", erlang_term(other)))),
    };
    let (apply_to, apply_to_error) = match body.get("apply-to") {
        None | Some(Value::Null) => ("all", None),
        Some(Value::String(apply_to)) => (apply_to.as_str(), ApplyTo::parse(apply_to).err()),
        Some(other) => (
            "all",
            Some(format!("apply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'", erlang_term(other))),
        ),
    };
    let (pattern, pattern_error) = match &body["pattern"] {
        Value::String(pattern) => (pattern.as_str(), pattern_problem(pattern)),
        other => ("", Some(format!("pattern should be a binary but was {}", erlang_term(other)))),
    };
    let (priority, priority_error) = match body.get("priority") {
        None | Some(Value::Null) => (0, None),
        Some(Value::Number(number)) if number.is_i64() => (number.as_i64().unwrap_or(0), None),
        Some(other) => (0, Some(format!("priority should be a number, actually was {}", erlang_term(other)))),
    };
    let reasons: Vec<String> =
        [definition_error, apply_to_error, pattern_error, priority_error].into_iter().flatten().collect();
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let input = PolicyInput { kind, vhost, name, pattern, apply_to, definition, priority };
    Policy::parse(&input).map_err(|reason| vec![reason])
}

/// Why a pattern is no regular expression, as `Policy::parse` words it.
fn pattern_problem(pattern: &str) -> Option<String> {
    let probe = Map::from_iter([("max-length".to_string(), Value::from(0))]);
    let input = PolicyInput {
        kind: PolicyKind::Policy,
        vhost: "",
        name: "probe",
        pattern,
        apply_to: "all",
        definition: &probe,
        priority: 0,
    };
    Policy::parse(&input).err()
}

/// The names a queue's JSON shows for its policies: RabbitMQ shows none as `null`.
pub fn shown_name(name: &str) -> Value {
    if name.is_empty() {
        Value::Null
    } else {
        Value::String(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn every_invalid_field_is_a_reason_in_rabbitmqs_order() {
        let given = body(json!({"pattern": 5, "definition": {"max-length": -1}, "apply-to": "x", "priority": 1.5}));
        let reasons = parse(PolicyKind::Policy, "/", "p", &given).expect_err("invalid");
        assert_eq!(
            reasons,
            [
                "-1 is not a valid maximum length",
                "apply-to 'x' unrecognised; should be 'queues', 'exchanges' or 'all'",
                "pattern should be a binary but was 5",
                "priority should be a number, actually was 1.5",
            ]
        );
    }

    #[test]
    fn priority_and_apply_to_have_rabbitmqs_defaults() {
        let given = body(json!({"pattern": "^q", "definition": {"max-length": 3}}));
        let policy = parse(PolicyKind::Operator, "/", "cap", &given).expect("valid");
        assert_eq!((policy.priority, policy.apply_to.as_str()), (0, "all"));
        assert_eq!((shown_name(""), shown_name("cap")), (Value::Null, json!("cap")));
    }
}
