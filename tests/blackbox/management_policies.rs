//! Policies and operator policies over the management API, checked against what RabbitMQ
//! 3.10.8 answers: set, replace, list and delete; a policy set over HTTP trims a queue before
//! the PUT is answered and shows in the queue's and exchange's JSON; RabbitMQ's validation
//! texts, 404s and refusals by tag; policies through a definitions export and import.

use serde_json::json;

use super::{wait_for_messages, Managed};

const LIMIT: &str = r#"{"pattern":"^orders\\.","definition":{"max-length":2},"priority":1,"apply-to":"queues"}"#;

fn publish_over_http(managed: &Managed, queue: &str, count: usize) {
    let body = format!(r#"{{"routing_key":"{queue}","payload":"m","payload_encoding":"string","properties":{{}}}}"#);
    for _ in 0..count {
        let published = managed.call("POST", "/api/exchanges/%2F/amq.default/publish", Some(&body));
        assert_eq!(published.json(), json!({"routed": true}));
    }
}

#[test]
fn policies_set_over_http_act_at_once_and_show_in_queues_and_exchanges() {
    let Some(managed) = Managed::start() else { return };
    assert_eq!(managed.call("PUT", "/api/queues/%2F/orders.eu", Some(r#"{"durable":true}"#)).status, 201);
    let plain = managed.call("GET", "/api/queues/%2F/orders.eu", None).json();
    assert_eq!(
        (plain["policy"].clone(), plain["operator_policy"].clone(), plain["effective_policy_definition"].clone()),
        (json!(null), json!(null), json!({}))
    );
    publish_over_http(&managed, "orders.eu", 5);
    wait_for_messages(&managed, "/api/queues/%2F/orders.eu", 5);

    let created = managed.call("PUT", "/api/policies/%2F/limit", Some(LIMIT));
    assert_eq!(created.status, 201, "{created:?}");
    // Answered once every shard applied it: the queue is trimmed already.
    let queue = managed.call("GET", "/api/queues/%2F/orders.eu", None).json();
    assert_eq!(queue["messages"], json!(2), "{queue}");
    assert_eq!(queue["policy"], json!("limit"));
    assert_eq!(queue["operator_policy"], json!(null));
    assert_eq!(queue["effective_policy_definition"], json!({"max-length": 2}));
    assert_eq!(managed.call("PUT", "/api/policies/%2F/limit", Some(LIMIT)).status, 204, "a replaced policy");

    let shown = json!({"vhost": "/", "name": "limit", "pattern": "^orders\\.", "apply-to": "queues",
                       "definition": {"max-length": 2}, "priority": 1});
    assert_eq!(managed.call("GET", "/api/policies/%2F/limit", None).json(), shown);
    let low = r#"{"pattern":"^nothing$","definition":{"expires":60000},"priority":-3}"#;
    assert_eq!(managed.call("PUT", "/api/policies/%2F/low", Some(low)).status, 201);
    let listed = managed.call("GET", "/api/policies", None).json();
    let names: Vec<&str> = listed.as_array().expect("a list").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["low", "limit"], "lowest priority first: {listed}");
    assert_eq!(listed[1], shown);
    assert_eq!(listed[0]["apply-to"], json!("all"), "apply-to defaults to all");
    assert_eq!(managed.call("GET", "/api/policies/%2F", None).json(), listed);

    let cap = r#"{"pattern":"^orders","definition":{"max-length":1,"message-ttl":60000}}"#;
    assert_eq!(managed.call("PUT", "/api/operator-policies/%2F/cap", Some(cap)).status, 201);
    let queue = managed.call("GET", "/api/queues/%2F/orders.eu", None).json();
    assert_eq!((queue["messages"].clone(), queue["operator_policy"].clone()), (json!(1), json!("cap")), "{queue}");
    assert_eq!(queue["effective_policy_definition"], json!({"max-length": 1, "message-ttl": 60000}));
    let operators = managed.call("GET", "/api/operator-policies", None).json();
    assert_eq!(operators.as_array().map(Vec::len), Some(1), "{operators}");
    assert_eq!(operators[0]["priority"], json!(0));
    assert_eq!(managed.call("GET", "/api/policies", None).json().as_array().map(Vec::len), Some(2), "kinds apart");

    let ae = r#"{"pattern":"^amq\\.direct$","definition":{"alternate-exchange":"amq.fanout"},"apply-to":"exchanges"}"#;
    assert_eq!(managed.call("PUT", "/api/policies/%2F/ae", Some(ae)).status, 201);
    assert_eq!(managed.call("GET", "/api/exchanges/%2F/amq.direct", None).json()["policy"], json!("ae"));
    let topic = managed.call("GET", "/api/exchanges/%2F/amq.topic", None).json();
    assert!(topic.get("policy").is_none(), "RabbitMQ shows no policy key without one: {topic}");

    assert_eq!(managed.call("DELETE", "/api/policies/%2F/limit", None).status, 204);
    assert_eq!(managed.call("DELETE", "/api/policies/%2F/limit", None).status, 404);
    assert_eq!(managed.call("DELETE", "/api/operator-policies/%2F/cap", None).status, 204);
    let queue = managed.call("GET", "/api/queues/%2F/orders.eu", None).json();
    assert_eq!((queue["policy"].clone(), queue["effective_policy_definition"].clone()), (json!(null), json!({})));
    let gone = managed.call("GET", "/api/policies/%2F/limit", None);
    assert_eq!((gone.status, gone.json()), (404, json!({"error": "Object Not Found", "reason": "Not Found"})));
}

#[test]
fn bad_policies_and_missing_vhosts_are_refused_with_rabbitmqs_reasons() {
    let Some(managed) = Managed::start() else { return };
    let refused = |path: &str, body: &str| {
        let reply = managed.call("PUT", path, Some(body));
        assert_eq!(reply.status, 400, "{reply:?}");
        reply.json()["reason"].as_str().expect("a reason").to_string()
    };
    let policy = "/api/policies/%2F/p";
    assert_eq!(
        refused(policy, r#"{"pattern":"^a","definition":{"max-length":2},"priority":"5"}"#),
        "Validation failed\n\npriority should be a number, actually was &lt;&lt;\"5\"&gt;&gt;\n"
    );
    assert_eq!(
        refused(policy, r#"{"pattern":"^a","definition":{"max-length":"x"}}"#),
        "Validation failed\n\n&lt;&lt;\"x\"&gt;&gt; is not a valid maximum length\n"
    );
    assert_eq!(
        refused(policy, r#"{"pattern":"^a","definition":{"max-length":"x"},"apply-to":"foo","priority":"x"}"#),
        "Validation failed\n\n&lt;&lt;\"x\"&gt;&gt; is not a valid maximum length\n\
         apply-to 'foo' unrecognised; should be 'queues', 'exchanges' or 'all'\n\
         priority should be a number, actually was &lt;&lt;\"x\"&gt;&gt;\n"
    );
    assert_eq!(refused(policy, r#"{"pattern":"a","definition":{}}"#), "Validation failed\n\nno policy provided\n");
    assert_eq!(
        refused(policy, r#"{"pattern":"a","definition":{"foo":1}}"#),
        "Validation failed\n\n[{&lt;&lt;\"foo\"&gt;&gt;,1}] are not recognised policy settings\n"
    );
    assert_eq!(refused(policy, r#"{"definition":{"max-length":1}}"#), "[{key_missing,pattern}]");
    assert_eq!(refused(policy, "{}"), "[{key_missing,pattern},{key_missing,definition}]");
    assert!(refused(policy, r#"{"pattern":"(","definition":{"max-length":1}}"#)
        .starts_with("Validation failed\n\npattern should be regular expression but is invalid"));
    assert_eq!(
        refused("/api/operator-policies/%2F/o", r#"{"pattern":"a","definition":{"dead-letter-exchange":"x"}}"#),
        "Validation failed\n\n[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings\n",
        "an operator policy takes only the limits, and RabbitMQ does not escape its reason"
    );
    let no_vhost = managed.call("PUT", "/api/policies/nov/p", Some(r#"{"pattern":"a","definition":{"max-length":1}}"#));
    assert_eq!((no_vhost.status, no_vhost.json()), (404, json!({"error": "not_found", "reason": "vhost_not_found"})));
    let not_found = json!({"error": "Object Not Found", "reason": "Not Found"});
    for (method, path) in
        [("GET", "/api/policies/nov"), ("GET", "/api/policies/nov/p"), ("DELETE", "/api/policies/%2F/p")]
    {
        let reply = managed.call(method, path, None);
        assert_eq!((reply.status, reply.json()), (404, not_found.clone()), "{method} {path}");
    }
    assert_eq!(managed.call("GET", "/api/policies", None).json(), json!([]), "nothing refused was kept");
}

#[test]
fn tags_decide_who_sets_and_who_lists_policies() {
    let Some(managed) = Managed::start() else { return };
    let all = r#"{"configure":".*","write":".*","read":".*"}"#;
    for (user, tags) in [("maker", "policymaker"), ("plain", "management"), ("watcher", "monitoring")] {
        let body = format!(r#"{{"password":"pw","tags":"{tags}"}}"#);
        assert_eq!(managed.call("PUT", &format!("/api/users/{user}"), Some(&body)).status, 201);
    }
    assert_eq!(managed.call("PUT", "/api/vhosts/other", None).status, 201);
    for user in ["maker", "plain"] {
        assert_eq!(managed.call("PUT", &format!("/api/permissions/%2F/{user}"), Some(all)).status, 201);
    }
    let body = r#"{"pattern":"^q","definition":{"max-length":3}}"#;
    let as_user =
        |user: &str, method: &str, path: &str, body: Option<&str>| managed.call_as(user, "pw", method, path, body);
    assert_eq!(as_user("maker", "PUT", "/api/policies/%2F/mine", Some(body)).status, 201);
    assert_eq!(as_user("maker", "GET", "/api/policies/%2F/mine", None).status, 200);
    assert_eq!(managed.call("PUT", "/api/policies/other/theirs", Some(body)).status, 201);
    let object = json!({"error": "not_authorised", "reason": "User not authorised to access object"});
    for (user, method, path) in [
        ("maker", "PUT", "/api/policies/other/p"),
        ("plain", "PUT", "/api/policies/%2F/p"),
        ("plain", "GET", "/api/policies/%2F/mine"),
        ("watcher", "DELETE", "/api/policies/%2F/mine"),
    ] {
        let reply = as_user(user, method, path, Some(body));
        assert_eq!((reply.status, reply.json()), (401, object.clone()), "{user} {method} {path}");
    }
    let operator = as_user("maker", "PUT", "/api/operator-policies/%2F/o", Some(body));
    assert_eq!((operator.status, operator.json()["reason"].clone()), (401, json!("Not administrator user")));
    // Listings: any management user, for the vhosts it has permissions in.
    let names = |user: &str, path: &str| {
        let reply = as_user(user, "GET", path, None);
        assert_eq!(reply.status, 200, "{user} {path}: {reply:?}");
        reply
            .json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("plain", "/api/policies"), ["mine"]);
    assert_eq!(names("watcher", "/api/policies"), Vec::<String>::new());
    assert_eq!(names("watcher", "/api/operator-policies"), Vec::<String>::new());
    assert_eq!(managed.call("GET", "/api/policies", None).json().as_array().map(Vec::len), Some(2));
    let other = as_user("plain", "GET", "/api/policies/other", None);
    assert_eq!(
        (other.status, other.json()["reason"].clone()),
        (401, json!("User not authorised to access virtual host"))
    );
    assert_eq!(as_user("maker", "DELETE", "/api/policies/%2F/mine", None).status, 204);
}

#[test]
fn policies_travel_through_a_definitions_export_and_import() {
    let Some(managed) = Managed::start() else { return };
    assert_eq!(managed.call("PUT", "/api/policies/%2F/limit", Some(LIMIT)).status, 201);
    let cap = r#"{"pattern":"^orders","definition":{"max-length":10},"priority":2}"#;
    assert_eq!(managed.call("PUT", "/api/operator-policies/%2F/cap", Some(cap)).status, 201);
    let exported = managed.call("GET", "/api/definitions", None);
    let document = exported.json();
    assert_eq!(document["policies"][0]["name"], json!("limit"), "{document}");
    assert_eq!(document["policies"][0]["definition"], json!({"max-length": 2}));
    let vhost_only = managed.call("GET", "/api/definitions/%2F", None).json();
    assert_eq!(vhost_only["policies"][0]["name"], json!("limit"), "{vhost_only}");
    assert_eq!(managed.call("DELETE", "/api/policies/%2F/limit", None).status, 204);
    assert_eq!(managed.call("DELETE", "/api/operator-policies/%2F/cap", None).status, 204);
    assert_eq!(managed.call("POST", "/api/definitions", Some(&exported.body)).status, 204);
    let back = managed.call("GET", "/api/policies/%2F/limit", None);
    assert_eq!((back.status, back.json()["priority"].clone()), (200, json!(1)), "{back:?}");
    assert_eq!(managed.call("GET", "/api/operator-policies/%2F/cap", None).status, 200);
    // The imported policy acts on a queue declared afterwards.
    assert_eq!(managed.call("PUT", "/api/queues/%2F/orders.us", Some("{}")).status, 201);
    publish_over_http(&managed, "orders.us", 4);
    let queue = wait_for_messages(&managed, "/api/queues/%2F/orders.us", 2);
    assert_eq!(queue["policy"], json!("limit"));
}
