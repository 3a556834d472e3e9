//! Policies and operator policies with `spatemq ctl`, as `rabbitmqctl` sets, lists and clears
//! them: their output and errors, their effect on queues that already hold messages, and
//! their survival across kill -9, export and import, and the deletion of their vhost.

use crate::accounts::{ctl, ctl_ok};
use crate::common::process::{BrokerProcess, DataDir};
use crate::common::*;

const VALIDATION_FAILED: &str = "Error:\nValidation failed\n\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_set_with_ctl_limit_existing_queues_and_survive_kill_9() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    let (conn, ch) = connect_channel(broker.uri()).await;
    for name in ["orders.eu", "orders.us", "billing"] {
        declare_queue_with(&ch, name, QueueDeclareOptions { durable: true, ..Default::default() }).await;
        for number in 0..5 {
            publish(&ch, "", name, format!("m{number}").as_bytes()).await;
        }
        wait_message_count(&ch, name, 5, T).await;
    }

    let out = ctl_ok(
        data.path(),
        &["set_policy", "cap", "^orders\\.", r#"{"max-length":2}"#, "--priority", "1", "--apply-to", "queues"],
    );
    assert_eq!(
        out,
        "Setting policy \"cap\" for pattern \"^orders\\.\" to \"{\"max-length\":2}\" with priority \"1\" for vhost \"/\" ...\n"
    );
    wait_message_count(&ch, "orders.eu", 2, T).await;
    wait_message_count(&ch, "orders.us", 2, T).await;
    assert_eq!(message_count(&ch, "billing").await, 5);
    assert_eq!(
        ctl_ok(data.path(), &["list_policies"]),
        "Listing policies for vhost \"/\" ...\nvhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tcap\t^orders\\.\tqueues\t{\"max-length\":2}\t1\n"
    );
    ctl_ok(data.path(), &["set_operator_policy", "ceiling", ".*", r#"{"max-length":1,"message-ttl":600000}"#]);
    wait_message_count(&ch, "orders.eu", 1, T).await;
    wait_message_count(&ch, "billing", 1, T).await;
    assert_eq!(
        ctl_ok(data.path(), &["list_operator_policies", "-q"]),
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tceiling\t.*\tall\t{\"max-length\":1,\"message-ttl\":600000}\t0\n"
    );
    assert_eq!(
        ctl_ok(data.path(), &["list_queues", "-s", "name", "policy", "operator_policy", "effective_policy_definition"]),
        "billing\t\tceiling\t{\"max-length\":1,\"message-ttl\":600000}\n\
         orders.eu\tcap\tceiling\t{\"max-length\":1,\"message-ttl\":600000}\n\
         orders.us\tcap\tceiling\t{\"max-length\":1,\"message-ttl\":600000}\n"
    );
    conn.close(200, "bye".into()).await.ok();
    broker.kill();

    let broker = BrokerProcess::start(data.path(), 2, &[]);
    assert_eq!(ctl_ok(data.path(), &["list_policies", "-s"]), "/\tcap\t^orders\\.\tqueues\t{\"max-length\":2}\t1\n");
    let (conn, ch) = connect_channel(broker.uri()).await;
    for number in 0..3 {
        publish(&ch, "", "orders.us", format!("after{number}").as_bytes()).await;
    }
    wait_message_count(&ch, "orders.us", 1, T).await;
    let clear = ctl_ok(data.path(), &["clear_operator_policy", "ceiling"]);
    assert_eq!(clear, "Clearing operator policy \"ceiling\" on vhost \"/\" ...\n");
    ctl_ok(data.path(), &["clear_policy", "cap"]);
    for number in 0..3 {
        publish(&ch, "", "orders.us", format!("free{number}").as_bytes()).await;
    }
    // The one message the caps left, and the three published without a limit.
    wait_message_count(&ch, "orders.us", 4, T).await;
    assert_eq!(ctl_ok(data.path(), &["list_queues", "-s", "name", "policy"]), "billing\t\norders.eu\t\norders.us\t\n");
    conn.close(200, "bye".into()).await.ok();
    broker.stop_cleanly();
}

#[test]
fn ctl_refuses_bad_policies_as_rabbitmqctl() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 1, &[]);
    let refused = |args: &[&str]| {
        let (code, _, err) = ctl(data.path(), args);
        (code, err)
    };
    let reason = |text: &str| format!("{VALIDATION_FAILED}{text}\n");
    assert_eq!(
        refused(&["set_policy", "p", ".*", r#"{"foo":1}"#]),
        (69, reason("[{<<\"foo\">>,1}] are not recognised policy settings"))
    );
    assert_eq!(
        refused(&["set_policy", "p", ".*", r#"{"message-ttl":-1}"#]),
        (69, reason("-1 is not a valid message TTL"))
    );
    assert_eq!(
        refused(&["set_policy", "p", ".*", r#"{"expires":"soon"}"#]),
        (69, reason("<<\"soon\">> is not a valid queue expiry"))
    );
    assert_eq!(refused(&["set_policy", "p", ".*", "{}"]), (69, reason("no policy provided")));
    assert_eq!(
        refused(&["set_policy", "p", ".*", "not json"]),
        (69, "Error:\nJSON decoding error. Reason: badarg\n".into())
    );
    assert_eq!(
        refused(&["set_operator_policy", "p", ".*", r#"{"dead-letter-exchange":"x"}"#]),
        (69, reason("[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings"))
    );
    assert_eq!(
        refused(&["set_policy", "p", "a", r#"{"max-length":1}"#, "--apply-to", "streams"]),
        (69, reason("apply-to 'streams' unrecognised; should be 'queues', 'exchanges' or 'all'"))
    );
    let (code, err) = refused(&["set_policy", "p", "(", r#"{"max-length":1}"#]);
    assert!(
        code == 69 && err.starts_with(&format!("{VALIDATION_FAILED}pattern should be regular expression")),
        "{err}"
    );
    let (code, err) = refused(&["set_policy", "p", "a", r#"{"max-length":1}"#, "--priority", "x"]);
    assert!(code == 64 && err.contains("--priority : x"), "{err}");
    let (code, err) = refused(&["set_policy", "p", "a"]);
    assert!(code == 64 && err.contains("not enough arguments"), "{err}");
    assert_eq!(
        refused(&["set_policy", "-p", "nope", "p", "a", r#"{"max-length":1}"#]),
        (65, "Virtual host 'nope' does not exist\n".into())
    );
    assert_eq!(refused(&["clear_policy", "missing"]), (69, "Error:\nParameter does not exist".into()));
    assert_eq!(
        refused(&["clear_operator_policy", "-p", "nope", "missing"]),
        (69, "Error:\nParameter does not exist".into())
    );
    assert_eq!(refused(&["list_policies", "-p", "nope"]), (65, "Virtual host 'nope' does not exist\n".into()));
    assert_eq!(ctl_ok(data.path(), &["list_policies", "-s"]), "", "nothing was set");
    broker.stop_cleanly();
}

#[test]
fn policies_travel_in_definitions_files_and_go_with_their_vhost() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    ctl_ok(data.path(), &["add_vhost", "apps"]);
    ctl_ok(
        data.path(),
        &["set_policy", "-p", "apps", "ttl", "^jobs", r#"{"message-ttl":5000,"dead-letter-exchange":"dlx"}"#],
    );
    ctl_ok(
        data.path(),
        &["set_operator_policy", "-p", "apps", "cap", ".*", r#"{"max-length-bytes":1000000}"#, "--priority", "7"],
    );
    let exported = data.path().join("exported.json");
    ctl_ok(data.path(), &["export_definitions", exported.to_str().expect("utf-8")]);
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&exported).expect("read")).expect("json");
    assert_eq!(
        document["policies"],
        serde_json::json!([{"vhost": "apps", "name": "ttl", "pattern": "^jobs", "apply-to": "all",
                            "definition": {"message-ttl": 5000, "dead-letter-exchange": "dlx"}, "priority": 0}])
    );
    let operator = document["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["component"] == "operator_policy");
    assert_eq!(operator.expect("exported")["value"]["priority"], 7);

    // Deleting the vhost deletes its policies; importing the file brings them back.
    ctl_ok(data.path(), &["delete_vhost", "apps"]);
    ctl_ok(data.path(), &["add_vhost", "apps"]);
    assert_eq!(ctl_ok(data.path(), &["list_policies", "-p", "apps", "-s"]), "");
    let out = ctl_ok(data.path(), &["import_definitions", exported.to_str().expect("utf-8")]);
    assert!(out.contains("Definitions imported."), "{out}");
    assert_eq!(
        ctl_ok(data.path(), &["list_policies", "-p", "apps", "-s"]),
        "apps\tttl\t^jobs\tall\t{\"dead-letter-exchange\":\"dlx\",\"message-ttl\":5000}\t0\n"
    );
    assert_eq!(
        ctl_ok(data.path(), &["list_operator_policies", "-p", "apps", "-s"]),
        "apps\tcap\t.*\tall\t{\"max-length-bytes\":1000000}\t7\n"
    );
    broker.stop_cleanly();
}
