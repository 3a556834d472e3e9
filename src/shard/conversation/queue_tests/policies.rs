//! Policies change queues that already hold messages, on whichever shard owns them: a
//! `max-length` trims at once (dead-lettering what it drops), a dead-letter exchange from a
//! policy takes the next dead message, a `message-ttl` expires what is published after it,
//! an operator policy caps the queue's own argument, clearing a policy gives the queue its
//! own arguments back, and an exchange's `alternate-exchange` may come from a policy.

use amq_protocol::protocol::exchange;
use serde_json::json;

use super::*;
use crate::broker::control::{AccountChange, ControlMsg, ControlReply, ControlRequest};
use crate::broker::policy::{Policy, PolicyInput, PolicyKind};

/// Asks the definitions writer (shard 0) as `spatemq ctl` would, and lets the shards settle.
fn control(broker: &Broker, change: AccountChange) -> Result<ControlReply, String> {
    let (reply, answer) = std::sync::mpsc::channel();
    broker.shards[0].handle_control(ControlMsg { request: ControlRequest::Change(Box::new(change)), reply });
    broker.settle();
    answer.recv().expect("the writer answers")
}

fn set_policy(broker: &Broker, kind: PolicyKind, name: &str, pattern: &str, definition: serde_json::Value) {
    let serde_json::Value::Object(definition) = definition else { panic!("a JSON object") };
    let input = PolicyInput { kind, vhost: "/", name, pattern, apply_to: "all", definition: &definition, priority: 0 };
    let policy = Policy::parse(&input).expect("a valid policy");
    control(broker, AccountChange::SetPolicy(Box::new(policy))).expect("set");
}

fn clear_policy(broker: &Broker, kind: PolicyKind, name: &str) {
    control(broker, AccountChange::ClearPolicy { kind, vhost: "/".into(), name: name.into() }).expect("cleared");
}

fn publish_numbered(client: &mut Client, queue: &str, count: usize) {
    for number in 1..=count {
        client.publish(1, "", queue, &AMQPProperties::default(), format!("m{number}").as_bytes());
    }
    assert!(client.output().is_empty(), "publishes are not answered");
}

/// The body of the message basic.get takes from `queue` (no-ack).
fn get_body(client: &mut Client, queue: &str) -> Vec<u8> {
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue.into(), no_ack: true })));
    match client.output().as_slice() {
        [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::GetOk(_)), .. }, Out::Header { .. }, Out::Body { body, .. }] => {
            body.to_vec()
        }
        other => panic!("expected get-ok with its content, got {other:?}"),
    }
}

fn fanout(client: &mut Client, name: &str) {
    let declare = exchange::Declare { exchange: name.into(), kind: "fanout".into(), ..Default::default() };
    client.send(1, AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare)));
    assert_eq!(
        client.methods(),
        vec![(1, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})))]
    );
}

#[test]
fn a_max_length_policy_trims_existing_queues_and_clearing_it_lifts_the_limit() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 0);
    for name in ["orders-a", "orders-b", "orders-c", "other"] {
        declared(&mut client, name);
        publish_numbered(&mut client, name, 5);
    }
    set_policy(&broker, PolicyKind::Policy, "cap-orders", "^orders-", json!({"max-length": 2}));
    for name in ["orders-a", "orders-b", "orders-c"] {
        assert_eq!(counts(&mut client, name), (2, 0), "{name} trimmed, wherever it lives");
    }
    assert_eq!(counts(&mut client, "other"), (5, 0), "a queue the pattern does not match keeps its messages");
    assert_eq!(get_body(&mut client, "orders-a"), b"m4", "drop-head drops the oldest");
    let listed = |vhost: Option<&str>| {
        let (reply, answer) = std::sync::mpsc::channel();
        let request = ControlRequest::ListPolicies { kind: PolicyKind::Policy, vhost: vhost.map(str::to_string) };
        broker.shards[0].handle_control(ControlMsg { request, reply });
        match answer.recv().expect("answered") {
            Ok(ControlReply::Policies(policies)) => Ok(policies.iter().map(|policy| policy.name.clone()).collect()),
            Ok(other) => panic!("policies expected, got {other:?}"),
            Err(problem) => Err(problem),
        }
    };
    assert_eq!(listed(None), Ok(vec!["cap-orders".to_string()]));
    assert_eq!(listed(Some("/")), Ok(vec!["cap-orders".to_string()]));
    assert_eq!(listed(Some("nope")), Err("Virtual host 'nope' does not exist".to_string()));
    clear_policy(&broker, PolicyKind::Policy, "cap-orders");
    publish_numbered(&mut client, "orders-b", 3);
    assert_eq!(counts(&mut client, "orders-b"), (5, 0), "no limit once the policy is gone");
}

#[test]
fn a_dead_letter_exchange_from_a_policy_takes_what_a_new_limit_drops() {
    let broker = Broker::new(2);
    let mut client = connected(&broker, 1);
    fanout(&mut client, "graveyard");
    declared(&mut client, "dead");
    assert_answer(&mut client, bind_method(bind("dead", "graveyard", "")), bind_ok());
    declared(&mut client, "work");
    publish_numbered(&mut client, "work", 3);
    set_policy(&broker, PolicyKind::Policy, "work", "^work$", json!({"dead-letter-exchange": "graveyard"}));
    assert_eq!(counts(&mut client, "work"), (3, 0), "a dead-letter exchange alone changes nothing");
    set_policy(
        &broker,
        PolicyKind::Policy,
        "work",
        "^work$",
        json!({"dead-letter-exchange": "graveyard", "max-length": 1}),
    );
    assert_eq!(counts(&mut client, "work"), (1, 0));
    assert_eq!(counts(&mut client, "dead"), (2, 0), "the two dropped messages were dead-lettered");
    assert_eq!(get_body(&mut client, "dead"), b"m1");
}

#[test]
fn a_message_ttl_policy_expires_messages_published_after_it() {
    let broker = Broker::new(2);
    let mut client = connected(&broker, 0);
    fanout(&mut client, "expired");
    declared(&mut client, "expired-messages");
    assert_answer(&mut client, bind_method(bind("expired-messages", "expired", "")), bind_ok());
    declared(&mut client, "short-lived");
    publish_numbered(&mut client, "short-lived", 1);
    set_policy(
        &broker,
        PolicyKind::Policy,
        "ttl",
        "^short",
        json!({"message-ttl": 0, "dead-letter-exchange": "expired"}),
    );
    publish_numbered(&mut client, "short-lived", 1);
    // RabbitMQ 3.10 gives a message its deadline when it arrives, and a classic queue
    // expires messages from its head: "m1" (no deadline) is still delivered, then "m1" of
    // the second publish, due at once, goes to the dead-letter exchange instead.
    assert_eq!(get_body(&mut client, "short-lived"), b"m1");
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: "short-lived".into(), no_ack: true })));
    let answer = client.methods();
    assert!(matches!(answer.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)))]), "{answer:?}");
    broker.settle();
    assert_eq!(counts(&mut client, "expired-messages"), (1, 0));
}

#[test]
fn an_operator_policy_caps_the_queue_argument_and_a_lower_argument_wins() {
    let broker = Broker::new(2);
    let mut client = connected(&broker, 0);
    assert_answer(
        &mut client,
        declare_with("roomy", &[("x-max-length", AMQPValue::LongInt(10))]),
        declare_ok("roomy", 0, 0),
    );
    assert_answer(
        &mut client,
        declare_with("tight", &[("x-max-length", AMQPValue::LongInt(1))]),
        declare_ok("tight", 0, 0),
    );
    publish_numbered(&mut client, "roomy", 5);
    set_policy(&broker, PolicyKind::Policy, "generous", ".*", json!({"max-length": 100}));
    assert_eq!(counts(&mut client, "roomy"), (5, 0));
    set_policy(&broker, PolicyKind::Operator, "cap", ".*", json!({"max-length": 3}));
    assert_eq!(counts(&mut client, "roomy"), (3, 0), "the operator policy caps the argument");
    publish_numbered(&mut client, "tight", 2);
    assert_eq!(counts(&mut client, "tight"), (1, 0), "the queue's own lower limit still applies");

    let (reply, answer) = std::sync::mpsc::channel();
    let owner = crate::broker::placement::queue_owner("/", "roomy", 2);
    broker.shards[owner]
        .handle_control(ControlMsg { request: ControlRequest::ListQueues { vhost: None, name: None }, reply });
    let Ok(ControlReply::Queues(queues)) = answer.recv().expect("answered") else { panic!("queues expected") };
    let roomy = queues.iter().find(|queue| queue.name == "roomy").expect("listed by its owner");
    assert_eq!((roomy.policy.as_str(), roomy.operator_policy.as_str()), ("generous", "cap"));
    assert_eq!(serde_json::Value::Object(roomy.effective_policy_definition.clone()), json!({"max-length": 3}));
}

#[test]
fn an_alternate_exchange_from_a_policy_takes_unroutable_messages() {
    let broker = Broker::new(2);
    let mut client = connected(&broker, 1);
    fanout(&mut client, "unrouted");
    declared(&mut client, "lost-and-found");
    assert_answer(&mut client, bind_method(bind("lost-and-found", "unrouted", "")), bind_ok());
    let direct = exchange::Declare { exchange: "events".into(), kind: "direct".into(), ..Default::default() };
    client.send(1, AMQPClass::Exchange(exchange::AMQPMethod::Declare(direct)));
    client.output();
    set_policy(&broker, PolicyKind::Policy, "ae", "^events$", json!({"alternate-exchange": "unrouted"}));
    client.publish(1, "events", "nobody", &AMQPProperties::default(), b"stray");
    broker.settle();
    assert_eq!(counts(&mut client, "lost-and-found"), (1, 0));
}
