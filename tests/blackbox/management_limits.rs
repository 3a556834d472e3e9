//! Vhost and user limits over the management API (RabbitMQ's one-key-at-a-time PUT and
//! DELETE, its listing shape and refusals), limits that AMQP clients then meet, and the health
//! checks Kubernetes probes and load balancers call, with the answers RabbitMQ 3.10.8 gives.

use serde_json::{json, Value};

use super::Managed;
use crate::common::*;

fn put_value(managed: &Managed, path: &str, body: &str) -> (u16, Value) {
    let reply = managed.call("PUT", path, Some(body));
    let body = if reply.body.is_empty() { Value::Null } else { reply.json() };
    (reply.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_limits_are_set_one_key_at_a_time_and_apply_to_amqp_clients() {
    let Some(managed) = Managed::start() else { return };
    assert_eq!(managed.call("GET", "/api/vhost-limits", None).json(), json!([]));
    assert_eq!(put_value(&managed, "/api/vhost-limits/%2F/max-queues", r#"{"value": 1}"#).0, 204);
    assert_eq!(put_value(&managed, "/api/vhost-limits/%2F/max-connections", r#"{"value": "50"}"#).0, 204);
    let listed = json!([{"vhost": "/", "value": {"max-connections": 50, "max-queues": 1}}]);
    assert_eq!(managed.call("GET", "/api/vhost-limits", None).json(), listed);
    assert_eq!(managed.call("GET", "/api/vhost-limits/%2F", None).json(), listed);

    // The queue limit holds for AMQP clients at once.
    let (connection, channel) = connect_channel(&managed.uri()).await;
    declare_queue(&channel, "first").await;
    let refused = channel.queue_declare("second".into(), QueueDeclareOptions::default(), FieldTable::default()).await;
    expect_channel_close(&refused.expect_err("over the vhost's max-queues"), 406);
    close_conn(&connection).await;

    let (status, reason) = put_value(&managed, "/api/vhost-limits/%2F/max-queues", r#"{"value": "many"}"#);
    assert_eq!(status, 400);
    assert!(reason["reason"].as_str().is_some_and(|text| text.contains("max-queues should be a number")), "{reason}");
    let (status, reason) = put_value(&managed, "/api/vhost-limits/%2F/max-bogus", r#"{"value": 3}"#);
    assert_eq!(status, 400);
    assert!(reason["reason"].as_str().is_some_and(|text| text.contains("Unrecognised terms")), "{reason}");
    assert_eq!(
        put_value(&managed, "/api/vhost-limits/%2F/max-queues", r#"{"valu": 3}"#),
        (400, json!({"error": "bad_request", "reason": "[{key_missing,value}]"}))
    );
    assert_eq!(
        put_value(&managed, "/api/vhost-limits/nowhere/max-queues", r#"{"value": 3}"#),
        (404, json!({"error": "not_found", "reason": "vhost_not_found"}))
    );

    assert_eq!(managed.call("DELETE", "/api/vhost-limits/%2F/max-queues", None).status, 204);
    let left = json!([{"vhost": "/", "value": {"max-connections": 50}}]);
    assert_eq!(managed.call("GET", "/api/vhost-limits", None).json(), left);
    // A negative value is no limit.
    assert_eq!(put_value(&managed, "/api/vhost-limits/%2F/max-connections", r#"{"value": -1}"#).0, 204);
    assert_eq!(managed.call("GET", "/api/vhost-limits", None).json(), json!([]));
}

#[test]
fn user_limits_are_listed_changed_and_refused_as_rabbitmq_does() {
    let Some(managed) = Managed::start() else { return };
    assert_eq!(put_value(&managed, "/api/user-limits/guest/max-connections", r#"{"value": 8}"#).0, 204);
    let listed = json!([{"user": "guest", "value": {"max-connections": 8}}]);
    assert_eq!(managed.call("GET", "/api/user-limits", None).json(), listed);
    assert_eq!(managed.call("GET", "/api/user-limits/guest", None).json(), listed);
    assert_eq!(
        put_value(&managed, "/api/user-limits/nobody/max-connections", r#"{"value": 8}"#),
        (400, json!({"error": "bad_request", "reason": ["no_such_user", "nobody"]}))
    );
    let (status, reason) = put_value(&managed, "/api/user-limits/guest/max-channels", r#"{"value": 8}"#);
    assert_eq!(status, 400, "{reason}");
    assert!(reason["reason"].as_str().is_some_and(|text| text.contains("max-channels")), "{reason}");
    assert_eq!(managed.call("GET", "/api/user-limits/nobody", None).status, 404);
    assert_eq!(managed.call("DELETE", "/api/user-limits/guest/max-connections", None).status, 204);
    assert_eq!(managed.call("GET", "/api/user-limits", None).json(), json!([]));
}

#[test]
fn health_checks_for_probes_answer_as_rabbitmq() {
    let Some(managed) = Managed::start() else { return };
    let check = |path: &str| {
        let reply = managed.call("GET", &format!("/api/health/checks/{path}"), None);
        (reply.status, reply.json())
    };
    assert_eq!(check("virtual-hosts"), (200, json!({"status": "ok"})));
    assert_eq!(check("node-is-quorum-critical"), (200, json!({"status": "ok", "reason": "single node cluster"})));
    assert_eq!(check("node-is-mirror-sync-critical"), (200, json!({"status": "ok", "reason": "single node cluster"})));
    let amqp_port = managed.broker.port();
    assert_eq!(check(&format!("port-listener/{amqp_port}")), (200, json!({"status": "ok", "port": amqp_port})));
    assert_eq!(check(&format!("port-listener/{}", managed.http_port)).0, 200);
    let (status, missing) = check("port-listener/1");
    assert_eq!(
        (status, missing["status"].clone(), missing["reason"].clone()),
        (503, json!("failed"), json!("No active listener"))
    );
    assert_eq!(missing["missing"], json!(1));
    let ports = missing["ports"].as_array().expect("the ports listened on");
    assert!(ports.contains(&json!(amqp_port)) && ports.contains(&json!(managed.http_port)), "{missing}");
    for spelling in ["amqp", "amqp091", "AMQP0-9-1"] {
        assert_eq!(check(&format!("protocol-listener/{spelling}")), (200, json!({"status": "ok", "protocol": "amqp"})));
    }
    assert_eq!(check("protocol-listener/http"), (200, json!({"status": "ok", "protocol": "http"})));
    let (status, missing) = check("protocol-listener/mqtt");
    assert_eq!((status, missing["missing"].clone()), (503, json!("mqtt")));
    assert!(missing["protocols"].as_array().is_some_and(|known| known.contains(&json!("amqp"))), "{missing}");
    assert_eq!(managed.call("GET", "/api/health/checks/is-in-service", None).status, 404);
    assert_eq!(managed.call("GET", "/api/health/checks", None).status, 404);
}
