//! The management HTTP API over a real socket: RabbitMQ's authentication answers, paths, JSON
//! and error bodies, objects made over HTTP seen by AMQP clients and the other way round, and
//! bad input (malformed JSON, wrong types, oversized and half-sent requests) answered without
//! disturbing AMQP traffic. Each test starts its own broker with a management port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::common::process::{external_broker, BrokerProcess, DataDir};
use crate::common::*;

#[path = "management_limits.rs"]
mod limits;
#[path = "management_policies.rs"]
mod policies;
#[path = "management_stats.rs"]
mod stats;
#[path = "management_ui.rs"]
mod ui;

/// A broker of its own with the management API on a free loopback port.
struct Managed {
    broker: BrokerProcess,
    http_port: u16,
    _data: DataDir,
}

impl Managed {
    fn start() -> Option<Managed> {
        if external_broker() {
            eprintln!("external broker: this test needs a broker of its own, skipped");
            return None;
        }
        let data = DataDir::new();
        let http_port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port();
        let port = http_port.to_string();
        let args = ["--management-port", port.as_str(), "--management-bind", "127.0.0.1"];
        let broker = BrokerProcess::start(data.path(), 2, &args);
        assert!(
            broker.stdout().contains(&format!("management HTTP API listening on 127.0.0.1:{http_port}")),
            "{}",
            broker.stdout()
        );
        Some(Managed { broker, http_port, _data: data })
    }

    fn uri(&self) -> String {
        self.broker.uri().to_string()
    }

    /// `method path` as guest.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_as("guest", "guest", method, path, body)
    }

    fn call_as(&self, user: &str, password: &str, method: &str, path: &str, body: Option<&str>) -> Reply {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let headers = [("Authorization", format!("Basic {credentials}"))];
        http(self.http_port, method, path, &headers, body.unwrap_or("").as_bytes())
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
    http_to("127.0.0.1", port, method, path, headers, body)
}

fn http_to(host: &str, port: u16, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect((host, port)).expect("connect to the management port");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).expect("send the request");
    stream.write_all(body).expect("send the body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    parse_reply(&answer)
}

fn parse_reply(answer: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    Reply { status, headers: head.to_lowercase(), body: body.to_string() }
}

#[test]
fn missing_or_wrong_credentials_are_401_with_the_realm() {
    let Some(managed) = Managed::start() else { return };
    let anonymous = http(managed.http_port, "GET", "/api/overview", &[], b"");
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers.contains("www-authenticate: basic realm=\"rabbitmq management\""), "{anonymous:?}");
    let wrong = managed.call_as("guest", "nope", "GET", "/api/whoami", None);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json(), json!({"error": "not_authorized", "reason": "Login failed"}));
    let whoami = managed.call("GET", "/api/whoami", None);
    assert_eq!((whoami.status, whoami.json()), (200, json!({"name": "guest", "tags": ["administrator"]})));
}

#[test]
fn tags_decide_what_a_user_may_do() {
    let Some(managed) = Managed::start() else { return };
    let created = managed.call("PUT", "/api/users/plain", Some(r#"{"password":"pw","tags":""}"#));
    assert_eq!(created.status, 201, "{created:?}");
    let monitor = managed.call("PUT", "/api/users/watcher", Some(r#"{"password":"pw","tags":"monitoring"}"#));
    assert_eq!(monitor.status, 201, "{monitor:?}");
    let untagged = managed.call_as("plain", "pw", "GET", "/api/overview", None);
    assert_eq!((untagged.status, untagged.json()["reason"].clone()), (401, json!("Not management user")));
    assert!(!untagged.headers.contains("www-authenticate"), "a refusal by tag asks for no other login");
    let users = managed.call_as("watcher", "pw", "GET", "/api/users", None);
    assert_eq!((users.status, users.json()["reason"].clone()), (401, json!("Not administrator user")));
    assert_eq!(managed.call_as("watcher", "pw", "GET", "/api/nodes", None).status, 200);
    let declare = managed.call_as("watcher", "pw", "PUT", "/api/queues/%2F/q", Some("{}"));
    assert_eq!(declare.status, 401, "no permissions in the vhost: {declare:?}");
}

#[test]
fn unknown_objects_and_paths_are_rabbitmqs_404() {
    let Some(managed) = Managed::start() else { return };
    let not_found = json!({"error": "Object Not Found", "reason": "Not Found"});
    for path in ["/api/queues/%2F/nosuch", "/api/vhosts/nosuch", "/api/users/nosuch", "/api/nosuch", "/nosuch"] {
        let reply = managed.call("GET", path, None);
        assert_eq!((reply.status, reply.json()), (404, not_found.clone()), "{path}");
    }
    assert_eq!(managed.call("DELETE", "/api/exchanges/%2F/nosuch", None).status, 404);
}

#[test]
fn bad_bodies_are_400_with_the_reason_and_a_huge_one_is_413() {
    let Some(managed) = Managed::start() else { return };
    let malformed = managed.call("PUT", "/api/queues/%2F/q", Some(r#"{"durable":"#));
    assert_eq!((malformed.status, malformed.json()), (400, json!({"error": "bad_request", "reason": "not_json"})));
    let wrong_type = managed.call("PUT", "/api/queues/%2F/q", Some(r#"{"durable":"maybe"}"#));
    assert_eq!(wrong_type.status, 400);
    assert_eq!(wrong_type.json()["reason"], json!(["not_boolean", "maybe"]));
    let huge = vec![b' '; 33 * 1024 * 1024];
    let credentials = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let reply = http(
        managed.http_port,
        "POST",
        "/api/definitions",
        &[("Authorization", format!("Basic {credentials}"))],
        &huge,
    );
    assert_eq!(reply.status, 413, "{}", reply.body);
    // Still serving.
    assert_eq!(managed.call("GET", "/api/overview", None).status, 200);
}

#[test]
fn a_half_sent_request_is_closed_and_nothing_else_waits_for_it() {
    let Some(managed) = Managed::start() else { return };
    let mut slow_headers = TcpStream::connect(("127.0.0.1", managed.http_port)).expect("connect");
    slow_headers.write_all(b"GET /api/overview HTTP/1.1\r\nHost: x\r\n").expect("half the headers");
    let mut slow_body = TcpStream::connect(("127.0.0.1", managed.http_port)).expect("connect");
    let credentials = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let head = format!(
        "POST /api/definitions HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\nContent-Length: 100\r\n\r\n{{\"users\""
    );
    slow_body.write_all(head.as_bytes()).expect("half the body");
    // Other requests are answered meanwhile.
    assert_eq!(managed.call("GET", "/api/overview", None).status, 200);
    // The broker closes both once its request timeout (10 s) has passed.
    let started = Instant::now();
    for (what, stream) in [("headers", &mut slow_headers), ("body", &mut slow_body)] {
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert!(read.is_ok(), "half-sent {what} not closed: {read:?}");
        if !rest.is_empty() {
            assert_eq!(parse_reply(&rest).status, 408, "half-sent {what}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(25), "closed after {:?}", started.elapsed());
}

/// RabbitMQ's queue objects name the queue type: `quorum` for `x-queue-type: quorum`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_objects_show_the_queue_type() {
    let Some(managed) = Managed::start() else { return };
    let quorum = r#"{"durable":true,"arguments":{"x-queue-type":"quorum"}}"#;
    assert_eq!(managed.call("PUT", "/api/queues/%2F/votes", Some(quorum)).status, 201);
    assert_eq!(managed.call("PUT", "/api/queues/%2F/plain", Some(r#"{"durable":true}"#)).status, 201);
    assert_eq!(managed.call("GET", "/api/queues/%2F/votes", None).json()["type"], json!("quorum"));
    assert_eq!(managed.call("GET", "/api/queues/%2F/plain", None).json()["type"], json!("classic"));
    let transient = managed.call("PUT", "/api/queues/%2F/fleeting", Some(r#"{"arguments":{"x-queue-type":"quorum"}}"#));
    assert_eq!(transient.status, 400);
    assert_eq!(transient.json()["reason"], json!("invalid property 'non-durable' for queue 'fleeting' in vhost '/'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_made_over_http_are_the_ones_amqp_clients_see() {
    let Some(managed) = Managed::start() else { return };
    let put = managed.call("PUT", "/api/queues/%2F/jobs", Some(r#"{"durable":"true","auto_delete":"false"}"#));
    assert_eq!(put.status, 201, "{put:?}");
    assert_eq!(managed.call("PUT", "/api/queues/%2F/jobs", Some(r#"{"durable":true}"#)).status, 204);
    let inequivalent = managed.call("PUT", "/api/queues/%2F/jobs", Some(r#"{"durable":false}"#));
    assert_eq!(inequivalent.status, 400);
    assert_eq!(
        inequivalent.json()["reason"],
        json!("inequivalent arg 'durable' for queue 'jobs' in vhost '/': received 'false' but current is 'true'")
    );
    let (connection, channel) = connect_channel(&managed.uri()).await;
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    channel.queue_declare("jobs".into(), passive, FieldTable::default()).await.expect("the queue exists for AMQP");
    publish(&channel, "", "jobs", b"from amqp").await;
    let published = managed.call(
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(r#"{"routing_key":"jobs","payload":"from http","payload_encoding":"string","properties":{"delivery_mode":"2"}}"#),
    );
    assert_eq!((published.status, published.json()), (200, json!({"routed": true})));
    let unroutable = managed.call(
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(r#"{"routing_key":"nowhere","payload":"x","payload_encoding":"string","properties":{}}"#),
    );
    assert_eq!(unroutable.json(), json!({"routed": false}));
    let queue = wait_for_messages(&managed, "/api/queues/%2F/jobs", 2);
    assert_eq!((queue["durable"].clone(), queue["messages_ready"].clone()), (json!(true), json!(2)));
    let got = managed.call(
        "POST",
        "/api/queues/%2F/jobs/get",
        Some(r#"{"count":"5","ackmode":"ack_requeue_true","encoding":"auto"}"#),
    );
    let got = got.json();
    assert_eq!(got.as_array().map(Vec::len), Some(2), "{got}");
    assert_eq!((got[0]["payload"].clone(), got[1]["payload"].clone()), (json!("from amqp"), json!("from http")));
    assert_eq!(got[1]["properties"]["delivery_mode"], json!(2));
    // Requeued: an AMQP basic.get sees the first again, redelivered.
    let again =
        channel.basic_get("jobs".into(), BasicGetOptions { no_ack: true }).await.expect("get").expect("a message");
    assert!(again.delivery.redelivered);
    assert_eq!(again.delivery.data, b"from amqp");
    assert_eq!(managed.call("DELETE", "/api/queues/%2F/jobs/contents", None).status, 204);
    wait_for_messages(&managed, "/api/queues/%2F/jobs", 0);
    assert_eq!(managed.call("DELETE", "/api/queues/%2F/jobs", None).status, 204);
    let gone = channel.queue_declare("jobs".into(), passive, FieldTable::default()).await;
    expect_close(gone, 404);
    close_conn(&connection).await;
}

/// The queue's JSON once it has `messages` messages (publishes travel through mailboxes).
fn wait_for_messages(managed: &Managed, path: &str, messages: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let queue = managed.call("GET", path, None).json();
        if queue["messages"] == json!(messages) || Instant::now() > deadline {
            assert_eq!(queue["messages"], json!(messages), "{queue}");
            return queue;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exchanges_and_bindings_use_properties_keys_and_amq_default() {
    let Some(managed) = Managed::start() else { return };
    assert_eq!(
        managed.call("PUT", "/api/exchanges/%2F/logs", Some(r#"{"type":"topic","durable":"true"}"#)).status,
        201
    );
    assert_eq!(managed.call("PUT", "/api/queues/%2F/errors", Some("{}")).status, 201);
    let bound = managed.call("POST", "/api/bindings/%2F/e/logs/q/errors", Some(r#"{"routing_key":"*.error"}"#));
    assert_eq!(bound.status, 201, "{bound:?}");
    let unkeyed = managed.call("POST", "/api/bindings/%2F/e/logs/q/errors", Some("{}"));
    assert_eq!(unkeyed.status, 201);
    let between = managed.call("GET", "/api/bindings/%2F/e/logs/q/errors", None).json();
    let keys: Vec<&str> =
        between.as_array().expect("a list").iter().filter_map(|row| row["properties_key"].as_str()).collect();
    assert_eq!(keys, vec!["~", "%2A.error"]);
    let routed = managed.call(
        "POST",
        "/api/exchanges/%2F/logs/publish",
        Some(r#"{"routing_key":"disk.error","payload":"full","payload_encoding":"string","properties":{}}"#),
    );
    assert_eq!(routed.json(), json!({"routed": true}));
    assert_eq!(managed.call("DELETE", "/api/bindings/%2F/e/logs/q/errors/~", None).status, 204);
    assert_eq!(managed.call("DELETE", "/api/bindings/%2F/e/logs/q/errors/~", None).status, 404);
    let default = managed.call("GET", "/api/exchanges/%2F/amq.default", None).json();
    assert_eq!((default["name"].clone(), default["type"].clone()), (json!(""), json!("direct")));
    let unknown_type = managed.call("PUT", "/api/exchanges/%2F/odd", Some(r#"{"type":"nosuch"}"#));
    assert_eq!(unknown_type.status, 400);
    assert_eq!(unknown_type.json()["reason"], json!("unknown exchange type 'nosuch'"));
}

#[test]
fn vhosts_users_and_permissions_with_percent_encoded_names() {
    let Some(managed) = Managed::start() else { return };
    assert_eq!(managed.call("PUT", "/api/vhosts/a%2Fb", None).status, 201);
    assert_eq!(managed.call("PUT", "/api/vhosts/a%2Fb", None).status, 204);
    assert_eq!(managed.call("GET", "/api/vhosts/a%2Fb", None).json()["name"], json!("a/b"));
    assert_eq!(managed.call("PUT", "/api/users/ann", Some(r#"{"password":"pw","tags":["management"]}"#)).status, 201);
    let granted =
        managed.call("PUT", "/api/permissions/a%2Fb/ann", Some(r#"{"configure":".*","write":".*","read":".*"}"#));
    assert_eq!(granted.status, 201);
    let permissions = managed.call("GET", "/api/users/ann/permissions", None).json();
    assert_eq!(permissions, json!([{"user": "ann", "vhost": "a/b", "configure": ".*", "write": ".*", "read": ".*"}]));
    // ann sees her vhost only, and may declare there.
    let vhosts = managed.call_as("ann", "pw", "GET", "/api/vhosts", None).json();
    assert_eq!(
        vhosts.as_array().map(|list| list.iter().map(|vhost| vhost["name"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("a/b")])
    );
    assert_eq!(managed.call_as("ann", "pw", "PUT", "/api/queues/a%2Fb/mine", Some("{}")).status, 201);
    assert_eq!(managed.call_as("ann", "pw", "GET", "/api/queues/%2F", None).status, 401);
    assert_eq!(managed.call("DELETE", "/api/vhosts/a%2Fb", None).status, 204);
    assert_eq!(managed.call("GET", "/api/vhosts/a%2Fb", None).status, 404);
}

#[test]
fn lists_page_sort_filter_and_pick_columns() {
    let Some(managed) = Managed::start() else { return };
    for name in ["q-b", "q-a", "other", "q-c"] {
        assert_eq!(managed.call("PUT", &format!("/api/queues/%2F/{name}"), Some("{}")).status, 201);
    }
    let plain = managed.call("GET", "/api/queues?columns=name", None).json();
    assert_eq!(plain, json!([{"name": "other"}, {"name": "q-a"}, {"name": "q-b"}, {"name": "q-c"}]));
    let reversed = managed.call("GET", "/api/queues?columns=name&sort=name&sort_reverse=true", None).json();
    assert_eq!(reversed[0], json!({"name": "q-c"}));
    let page = managed.call("GET", "/api/queues?page=2&page_size=2&name=q-&columns=name", None).json();
    assert_eq!(
        page,
        json!({"total_count": 4, "item_count": 1, "filtered_count": 3, "page": 2, "page_size": 2, "page_count": 2,
               "items": [{"name": "q-c"}]})
    );
    let regex =
        managed.call("GET", "/api/queues?page=1&name=%5EQ-%5Bab%5D%24&use_regex=true&columns=name", None).json();
    assert_eq!(regex["items"], json!([{"name": "q-a"}, {"name": "q-b"}]));
    assert_eq!(managed.call("GET", "/api/queues?page=1&page_size=501", None).status, 400);
    assert_eq!(managed.call("GET", "/api/queues?page=0", None).status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_and_consumers_are_listed_and_closed_with_the_reason() {
    let Some(managed) = Managed::start() else { return };
    let (connection, channel) = connect_channel(&managed.uri()).await;
    declare_queue(&channel, "watched").await;
    let _inbox = consume_tagged(&channel, "watched", "tag-1", BasicConsumeOptions::default()).await;
    let connections = managed.call("GET", "/api/connections", None).json();
    let name = connections[0]["name"].as_str().expect("a connection name").to_string();
    assert_eq!((connections[0]["user"].clone(), connections[0]["channels"].clone()), (json!("guest"), json!(1)));
    let channels = managed.call("GET", "/api/channels", None).json();
    assert_eq!(channels[0]["name"], json!(format!("{name} (1)")));
    let consumers = managed.call("GET", "/api/consumers/%2F", None).json();
    assert_eq!(consumers[0]["consumer_tag"], json!("tag-1"));
    assert_eq!(consumers[0]["queue"], json!({"name": "watched", "vhost": "/"}));
    assert_eq!(consumers[0]["channel_details"]["connection_name"], json!(name.clone()));
    let overview = managed.call("GET", "/api/overview", None).json();
    assert_eq!(overview["object_totals"]["consumers"], json!(1));
    let encoded = name.replace(' ', "%20").replace('>', "%3E");
    let credentials = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let headers = [("Authorization", format!("Basic {credentials}")), ("X-Reason", "maintenance".to_string())];
    let closed = http(managed.http_port, "DELETE", &format!("/api/connections/{encoded}"), &headers, b"");
    assert_eq!(closed.status, 204, "{closed:?}");
    let deadline = Instant::now() + Duration::from_secs(T);
    while connection.status().connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!connection.status().connected(), "closed over HTTP");
    managed.broker.stderr_containing("maintenance", 5).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut listed = managed.call("GET", "/api/connections", None).json();
    while listed != json!([]) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        listed = managed.call("GET", "/api/connections", None).json();
    }
    assert_eq!(listed, json!([]));
}

#[test]
fn definitions_export_and_import_round_trip_and_health_checks_pass() {
    let Some(managed) = Managed::start() else { return };
    assert_eq!(managed.call("PUT", "/api/queues/%2F/kept", Some(r#"{"durable":true}"#)).status, 201);
    let exported = managed.call("GET", "/api/definitions", None);
    assert_eq!(exported.status, 200);
    let document = exported.json();
    assert!(document["queues"].as_array().is_some_and(|queues| queues.iter().any(|queue| queue["name"] == "kept")));
    let vhost_only = managed.call("GET", "/api/definitions/%2F", None).json();
    assert!(vhost_only.get("users").is_none() && vhost_only["queues"][0].get("vhost").is_none(), "{vhost_only}");
    assert_eq!(managed.call("DELETE", "/api/queues/%2F/kept", None).status, 204);
    assert_eq!(managed.call("POST", "/api/definitions", Some(&exported.body)).status, 204);
    assert_eq!(managed.call("GET", "/api/queues/%2F/kept", None).status, 200);
    let invalid = managed.call("POST", "/api/definitions", Some(r#"{"queues": 5}"#));
    assert_eq!(invalid.status, 400, "{invalid:?}");
    for path in ["/api/health/checks/alarms", "/api/health/checks/local-alarms", "/api/aliveness-test/%2F"] {
        let reply = managed.call("GET", path, None);
        assert_eq!((reply.status, reply.json()), (200, json!({"status": "ok"})), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stats_count_publishes_deliveries_acks_and_redeliveries() {
    let Some(managed) = Managed::start() else { return };
    let (connection, channel) = connect_channel(&managed.uri()).await;
    declare_queue(&channel, "counted").await;
    for body in [b"1", b"2", b"3"] {
        publish(&channel, "", "counted", body).await;
    }
    wait_for_messages(&managed, "/api/queues/%2F/counted", 3);
    let first =
        channel.basic_get("counted".into(), BasicGetOptions { no_ack: false }).await.expect("get").expect("one");
    first.delivery.acker.ack(BasicAckOptions::default()).await.expect("ack");
    let second =
        channel.basic_get("counted".into(), BasicGetOptions { no_ack: false }).await.expect("get").expect("one");
    second.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.expect("nack");
    let again = channel.basic_get("counted".into(), BasicGetOptions { no_ack: true }).await.expect("get").expect("one");
    assert!(again.delivery.redelivered);
    let expected = json!({"publish": 3, "deliver_get": 3, "ack": 1, "redeliver": 1});
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let queue = managed.call("GET", "/api/queues/%2F/counted", None).json();
        let stats = &queue["message_stats"];
        let counts = json!({"publish": stats["publish"], "deliver_get": stats["deliver_get"],
                            "ack": stats["ack"], "redeliver": stats["redeliver"]});
        if counts == expected || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats, expected);
    let overview = managed.call("GET", "/api/overview", None).json();
    assert_eq!(overview["message_stats"]["publish"], json!(3), "{overview}");
    assert!(overview["message_stats"]["publish_details"]["rate"].is_number());
    let vhost = managed.call("GET", "/api/vhosts/%2F", None).json();
    assert_eq!(vhost["message_stats"]["ack"], json!(1));
    close_conn(&connection).await;
}

#[test]
fn guest_is_refused_from_another_host_and_an_administrator_is_not() {
    if external_broker() {
        return;
    }
    let netns = crate::common::netns::NetNs::create();
    let data = DataDir::new();
    let http_port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port();
    let port = http_port.to_string();
    let _broker = BrokerProcess::start(data.path(), 1, &["--management-port", &port, "--management-bind", "0.0.0.0"]);
    let basic = |user: &str, password: &str| {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        vec![("Authorization", format!("Basic {credentials}"))]
    };
    let made = http(
        http_port,
        "PUT",
        "/api/users/ops",
        &basic("guest", "guest"),
        br#"{"password":"ops-pass","tags":"administrator"}"#,
    );
    assert_eq!(made.status, 201, "{made:?}");
    let host = netns.host_ip.clone();
    let (guest, ops) = netns.run(move || {
        let guest = http_to(&host, http_port, "GET", "/api/whoami", &basic("guest", "guest"), b"");
        let ops = http_to(&host, http_port, "GET", "/api/whoami", &basic("ops", "ops-pass"), b"");
        (guest, ops)
    });
    assert_eq!(guest.status, 401);
    assert_eq!(guest.json(), json!({"error": "not_authorised", "reason": "User can only log in via localhost"}));
    assert_eq!((ops.status, ops.json()["name"].clone()), (200, json!("ops")));
}

/// A stream shows `type: stream` in its queue object and in the definitions export, and a
/// definitions import declares one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_show_their_type_and_import() {
    let Some(managed) = Managed::start() else { return };
    let stream = r#"{"durable":true,"arguments":{"x-queue-type":"stream","x-max-age":"7D"}}"#;
    assert_eq!(managed.call("PUT", "/api/queues/%2F/events", Some(stream)).status, 201);
    assert_eq!(managed.call("GET", "/api/queues/%2F/events", None).json()["type"], json!("stream"));
    let exported = managed.call("GET", "/api/definitions", None).json();
    let queues = exported["queues"].as_array().cloned().unwrap_or_default();
    let events = queues.iter().find(|queue| queue["name"] == json!("events")).cloned().unwrap_or_default();
    assert_eq!((events["type"].clone(), events["arguments"]["x-max-age"].clone()), (json!("stream"), json!("7D")));
    let import = r#"{"queues":[{"vhost":"/","name":"imported","durable":true,"auto_delete":false,"type":"stream","arguments":{"x-queue-type":"stream"}}]}"#;
    let imported = managed.call("POST", "/api/definitions", Some(import));
    assert!(imported.status < 300, "import: {}", imported.status);
    // The import answers once the definitions are applied; the queue object may still be on
    // its way to its owner shard, so the listing is asked again for a while.
    let mut shown = json!(null);
    for _ in 0..50 {
        shown = managed.call("GET", "/api/queues/%2F/imported", None).json()["type"].clone();
        if shown == json!("stream") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown, json!("stream"));
}
