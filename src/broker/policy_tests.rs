use amq_protocol::types::{AMQPValue, LongString};
use serde_json::json;

use super::*;

fn definition(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn policy(kind: PolicyKind, name: &str, pattern: &str, apply_to: &str, priority: i64, value: Value) -> Arc<Policy> {
    let definition = definition(value);
    let input = PolicyInput { kind, vhost: "/", name, pattern, apply_to, definition: &definition, priority };
    Arc::new(Policy::parse(&input).expect("valid policy"))
}

fn refused(kind: PolicyKind, value: Value) -> String {
    let definition = definition(value);
    let input = PolicyInput {
        kind,
        vhost: "/",
        name: "p",
        pattern: ".*",
        apply_to: "all",
        definition: &definition,
        priority: 0,
    };
    Policy::parse(&input).expect_err("refused")
}

fn arguments(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert((*key).into(), value.clone());
    }
    table
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

#[test]
fn definitions_are_refused_with_rabbitmqs_reasons() {
    let policy = PolicyKind::Policy;
    assert_eq!(refused(policy, json!({"foo": 1})), "[{<<\"foo\">>,1}] are not recognised policy settings");
    assert_eq!(refused(policy, json!({"message-ttl": "abc"})), "<<\"abc\">> is not a valid message TTL");
    assert_eq!(refused(policy, json!({"message-ttl": -1})), "-1 is not a valid message TTL");
    assert_eq!(refused(policy, json!({"expires": 0})), "0 is not a valid queue expiry");
    assert_eq!(refused(policy, json!({"overflow": "x"})), "<<\"x\">> is not a valid overflow value");
    assert_eq!(refused(policy, json!({})), "no policy provided");
    assert_eq!(refused(policy, json!({"dead-letter-exchange": 5})), "5 is not a valid dead letter exchange name");
    // Known keys are checked (in name order) before unknown ones are reported.
    assert_eq!(refused(policy, json!({"max-length": 1.5, "zzz": 2, "aaa": true})), "1.5 is not a valid maximum length");
    // RabbitMQ 3.10 has no max-priority policy key.
    assert_eq!(
        refused(policy, json!({"max-priority": 5})),
        "[{<<\"max-priority\">>,5}] are not recognised policy settings"
    );
    assert_eq!(
        refused(PolicyKind::Operator, json!({"dead-letter-exchange": "x"})),
        "[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings"
    );
}

#[test]
fn patterns_apply_to_and_json_are_checked() {
    let map = definition(json!({"max-length": 1}));
    let input = PolicyInput {
        kind: PolicyKind::Policy,
        vhost: "/",
        name: "p",
        pattern: "(",
        apply_to: "all",
        definition: &map,
        priority: 0,
    };
    assert!(Policy::parse(&input)
        .expect_err("bad pattern")
        .starts_with("pattern should be regular expression but is invalid"));
    let input = PolicyInput { pattern: "a", apply_to: "streams", ..input };
    assert_eq!(
        Policy::parse(&input).expect_err("bad apply-to"),
        "apply-to 'streams' unrecognised; should be 'queues', 'exchanges' or 'all'"
    );
    assert_eq!(parse_definition("notjson").expect_err("not json"), "JSON decoding error. Reason: badarg");
    assert!(parse_definition("[1]").is_err());
    assert_eq!(parse_definition("{\"queue-mode\":\"lazy\"}").expect("accepted").len(), 1);
}

#[test]
fn the_highest_priority_matching_policy_of_the_right_kind_wins() {
    let mut policies = VhostPolicies::default();
    policies.put(policy(PolicyKind::Policy, "all-low", ".*", "all", 0, json!({"max-length": 9})));
    policies.put(policy(PolicyKind::Policy, "orders", "^orders\\.", "queues", 5, json!({"max-length": 5})));
    policies.put(policy(
        PolicyKind::Policy,
        "exchanges",
        "orders",
        "exchanges",
        10,
        json!({"alternate-exchange": "ae"}),
    ));
    assert_eq!(policies.for_queue("orders.eu").policy_name(), "orders");
    assert_eq!(policies.for_queue("billing").policy_name(), "all-low");
    // The pattern is searched anywhere in the name, as PCRE's re:run does.
    assert_eq!(policies.for_exchange("my-orders").expect("matched").name, "exchanges");
    assert_eq!(policies.for_exchange("billing").expect("matched").name, "all-low");
    // Replacing a policy keeps one of that name; removing it falls back to the next.
    policies.put(policy(PolicyKind::Policy, "orders", "^orders\\.", "queues", -1, json!({"max-length": 5})));
    assert_eq!(policies.for_queue("orders.eu").policy_name(), "all-low");
    assert!(policies.remove(PolicyKind::Policy, "all-low"));
    assert!(!policies.remove(PolicyKind::Policy, "all-low"));
    assert_eq!(policies.for_queue("orders.eu").policy_name(), "orders");
    assert_eq!(policies.for_queue("billing").policy_name(), "");
}

#[test]
fn queue_arguments_win_for_targets_and_the_lowest_limit_applies() {
    let applied = AppliedPolicies {
        policy: Some(policy(
            PolicyKind::Policy,
            "p",
            ".*",
            "all",
            0,
            json!({"max-length": 10, "message-ttl": 5000, "overflow": "reject-publish",
                   "dead-letter-exchange": "policy-dlx", "dead-letter-routing-key": "policy-key"}),
        )),
        operator: None,
    };
    let plain = applied.queue_args(&FieldTable::default());
    assert_eq!(plain.max_length, Some(10));
    assert_eq!(plain.message_ttl_ms, Some(5000));
    assert_eq!(plain.overflow, Overflow::RejectPublish);
    let target = plain.dead_letter.expect("policy dlx");
    assert_eq!((target.exchange.as_str(), target.routing_key.as_deref()), ("policy-dlx", Some("policy-key")));

    let own = arguments(&[
        ("x-max-length", AMQPValue::LongInt(20)),
        ("x-message-ttl", AMQPValue::LongInt(100)),
        ("x-overflow", long_string("drop-head")),
        ("x-dead-letter-routing-key", long_string("own-key")),
    ]);
    let merged = applied.queue_args(&own);
    assert_eq!(merged.max_length, Some(10), "the lower of argument and policy");
    assert_eq!(merged.message_ttl_ms, Some(100), "the lower of argument and policy");
    assert_eq!(merged.overflow, Overflow::DropHead, "the argument wins");
    let target = merged.dead_letter.expect("policy dlx with the argument's key");
    assert_eq!((target.exchange.as_str(), target.routing_key.as_deref()), ("policy-dlx", Some("own-key")));
}

#[test]
fn operator_policies_cap_policies_and_arguments() {
    let applied = AppliedPolicies {
        policy: Some(policy(PolicyKind::Policy, "p", ".*", "all", 0, json!({"max-length": 10, "expires": 1000}))),
        operator: Some(policy(
            PolicyKind::Operator,
            "cap",
            ".*",
            "all",
            0,
            json!({"max-length": 3, "message-ttl": 60000, "delivery-limit": 2}),
        )),
    };
    let args = applied.queue_args(&arguments(&[("x-message-ttl", AMQPValue::LongInt(90000))]));
    assert_eq!(args.max_length, Some(3));
    assert_eq!(args.expires_ms, Some(1000));
    assert_eq!(args.message_ttl_ms, Some(60000));
    assert_eq!(args.delivery_limit, Some(2));
    assert_eq!(
        Value::Object(applied.effective_definition()).to_string(),
        r#"{"delivery-limit":2,"expires":1000,"max-length":3,"message-ttl":60000}"#
    );
    let operator_only = AppliedPolicies { policy: None, operator: applied.operator.clone() };
    assert_eq!(operator_only.queue_args(&FieldTable::default()).max_length, Some(3));
    assert!(operator_only.same_as(&AppliedPolicies { policy: None, operator: applied.operator.clone() }));
    assert!(!operator_only.same_as(&applied));
}

#[test]
fn a_policy_shows_as_rabbitmq_shows_it() {
    let limit = policy(PolicyKind::Policy, "limit", "^q", "queues", 3, json!({"max-length": 5, "message-ttl": 1000}));
    assert_eq!(limit.definition_json(), r#"{"max-length":5,"message-ttl":1000}"#);
    assert_eq!(
        limit.to_json(),
        json!({"vhost": "/", "name": "limit", "pattern": "^q", "apply-to": "queues",
               "definition": {"max-length": 5, "message-ttl": 1000}, "priority": 3})
    );
}

#[test]
fn a_quorum_queue_takes_the_policy_overflow_and_expires_over_its_arguments() {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(1000));
    arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(9));
    let applied_policy = |value| AppliedPolicies {
        policy: Some(policy(PolicyKind::Policy, "p", ".*", "all", 0, value)),
        operator: None,
    };
    let applied = applied_policy(json!({"overflow": "drop-head", "expires": 60000, "delivery-limit": 2}));
    let args = applied.queue_args(&arguments);
    assert_eq!(args.overflow, Overflow::DropHead);
    assert_eq!(args.expires_ms, Some(60000));
    assert_eq!(args.delivery_limit, Some(2), "the lower delivery limit applies");
    let dlx = applied_policy(json!({"overflow": "reject-publish-dlx"}));
    assert_eq!(dlx.queue_args(&arguments).overflow, Overflow::DropHead);
}
