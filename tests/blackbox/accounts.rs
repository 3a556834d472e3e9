//! Users, vhosts and permissions, administered with `spatemq ctl` on a running broker and
//! used by lapin clients: logins, RabbitMQ's access checks for every method that has one,
//! vhost isolation and deletion, connection.update-secret, and survival across kill -9.

use std::path::Path;
use std::process::Command;

use crate::common::process::{BrokerProcess, DataDir};
use crate::common::*;

/// Runs `spatemq ctl --data-dir DIR ARGS`; returns (exit code, stdout, stderr).
pub fn ctl(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spatemq"))
        .arg("ctl")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run spatemq ctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a ctl command that must succeed; returns its stdout.
#[track_caller]
pub fn ctl_ok(data_dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(data_dir, args);
    assert_eq!(code, 0, "spatemq ctl {args:?} failed: {out}{err}");
    out
}

/// The broker's URI with `user:password` and `vhost` (escaped for a URI).
pub fn uri_for(broker_uri: &str, user: &str, password: &str, vhost: &str) -> String {
    let host = broker_uri.rsplit_once('@').map_or(broker_uri, |(_, rest)| rest);
    let authority = host.split('/').next().unwrap_or(host);
    let vhost = vhost.replace('%', "%25").replace('/', "%2f");
    format!("amqp://{user}:{password}@{authority}/{vhost}")
}

async fn try_connect(uri: &str) -> lapin::Result<Connection> {
    within(T, Connection::connect(uri, ConnectionProperties::default())).await
}

fn setup_app_user(data: &Path, vhost: &str) {
    ctl_ok(data, &["add_vhost", vhost]);
    ctl_ok(data, &["add_user", "app", "app-secret"]);
    ctl_ok(data, &["set_permissions", "-p", vhost, "app", "^app-", "^app-", "^app-"]);
    ctl_ok(data, &["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_made_with_ctl_logs_in_to_its_vhost_only() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    setup_app_user(data.path(), "apps");
    let listed = ctl_ok(data.path(), &["list_users", "-s"]);
    assert!(listed.contains("app\t[]") && listed.contains("guest\t[administrator]"), "{listed}");

    let conn = try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await.expect("app logs in");
    let ch = open_channel(&conn).await;
    within(T, ch.queue_declare("app-jobs".into(), QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .expect("declare within its permissions");
    conn.close(200, "bye".into()).await.ok();

    let wrong = try_connect(&uri_for(broker.uri(), "app", "wrong", "apps")).await;
    let error = expect_close(wrong.map(|_| ()), 403);
    assert_eq!(
        reply_text(&error).as_deref(),
        Some("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.")
    );
    let stderr = broker.stderr_containing("user 'app' - invalid credentials", 5).await;
    assert!(!stderr.contains("wrong"), "the password is never logged: {stderr}");

    let other_vhost = try_connect(&uri_for(broker.uri(), "app", "app-secret", "/")).await;
    let error = expect_close(other_vhost.map(|_| ()), 530);
    assert_eq!(reply_text(&error).as_deref(), Some("NOT_ALLOWED - access to vhost '/' refused for user 'app'"));

    ctl_ok(data.path(), &["change_password", "app", "new-secret"]);
    expect_close(try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await.map(|_| ()), 403);
    try_connect(&uri_for(broker.uri(), "app", "new-secret", "apps")).await.expect("the new password works");
    broker.stop_cleanly();
}

/// Expects `operation` on a fresh channel of `conn` to close that channel with 403 and
/// RabbitMQ's text for `resource` ("queue 'x'" or "exchange 'x'").
async fn expect_refused<F, Fut, T>(conn: &Connection, resource: &str, vhost: &str, operation: F)
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = lapin::Result<T>>,
    T: std::fmt::Debug,
{
    let ch = open_channel(conn).await;
    let result = within(T_SECS, operation(ch)).await;
    let text = format!("ACCESS_REFUSED - access to {resource} in vhost '{vhost}' refused for user 'app'");
    expect_close_text(result, 403, &text);
}

const T_SECS: u64 = T;

/// A publish is asynchronous: on a confirm-mode channel the refusal (a channel close) fails
/// the publish's pending confirm with the close's code and text.
async fn publish_then_sync(ch: Channel, exchange: &str, routing_key: &str) -> lapin::Result<()> {
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            b"body",
            BasicProperties::default(),
        )
        .await?;
    confirm.await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_checks_the_permission_rabbitmq_checks() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    let vhost = "perm";
    setup_app_user(data.path(), vhost);
    // guest makes what app may not touch.
    let admin = try_connect(&uri_for(broker.uri(), "guest", "guest", vhost)).await.expect("guest");
    let ach = open_channel(&admin).await;
    within(T, ach.queue_declare("other-q".into(), QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .expect("the broker answers");
    within(
        T,
        ach.exchange_declare(
            "other-x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("the broker answers");

    let conn = try_connect(&uri_for(broker.uri(), "app", "app-secret", vhost)).await.expect("app");
    let ch = open_channel(&conn).await;
    // Allowed: everything named app-*.
    within(T, ch.queue_declare("app-q".into(), QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .expect("the broker answers");
    within(
        T,
        ch.exchange_declare(
            "app-x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("the broker answers");
    within(
        T,
        ch.exchange_declare(
            "app-y".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("the broker answers");
    within(
        T,
        ch.queue_bind("app-q".into(), "app-x".into(), "k".into(), QueueBindOptions::default(), FieldTable::default()),
    )
    .await
    .expect("the broker answers");
    within(
        T,
        ch.exchange_bind(
            "app-y".into(),
            "app-x".into(),
            "k".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("the broker answers");
    publish_then_sync(ch.clone(), "app-x", "k").await.expect("publish to app-x");
    let got =
        within(T, ch.basic_get("app-q".into(), BasicGetOptions { no_ack: true })).await.expect("the broker answers");
    assert!(got.is_some(), "the message routed to app-q");
    within(T, ch.queue_purge("app-q".into(), QueuePurgeOptions::default())).await.expect("the broker answers");

    // Refused, each with RabbitMQ's text.
    expect_refused(&conn, "queue 'other-q2'", vhost, |ch| async move {
        ch.queue_declare("other-q2".into(), QueueDeclareOptions::default(), FieldTable::default()).await
    })
    .await;
    expect_refused(&conn, "exchange 'other-x2'", vhost, |ch| async move {
        ch.exchange_declare(
            "other-x2".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await;
    expect_refused(&conn, "queue 'other-q'", vhost, |ch| async move {
        ch.queue_delete("other-q".into(), QueueDeleteOptions::default()).await
    })
    .await;
    expect_refused(&conn, "exchange 'other-x'", vhost, |ch| async move {
        ch.exchange_delete("other-x".into(), ExchangeDeleteOptions::default()).await
    })
    .await;
    expect_refused(&conn, "queue 'other-q'", vhost, |ch| async move {
        ch.queue_bind("other-q".into(), "app-x".into(), "k".into(), QueueBindOptions::default(), FieldTable::default())
            .await
    })
    .await;
    expect_refused(&conn, "exchange 'other-x'", vhost, |ch| async move {
        ch.queue_bind("app-q".into(), "other-x".into(), "k".into(), QueueBindOptions::default(), FieldTable::default())
            .await
    })
    .await;
    expect_refused(&conn, "exchange 'other-x'", vhost, |ch| async move {
        ch.queue_unbind("app-q".into(), "other-x".into(), "k".into(), FieldTable::default()).await
    })
    .await;
    expect_refused(&conn, "exchange 'other-x'", vhost, |ch| async move {
        ch.exchange_bind(
            "app-y".into(),
            "other-x".into(),
            "k".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await;
    expect_refused(&conn, "exchange 'other-x'", vhost, |ch| async move {
        ch.exchange_bind(
            "other-x".into(),
            "app-x".into(),
            "k".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await;
    expect_refused(&conn, "exchange 'other-x'", vhost, |ch| publish_then_sync(ch, "other-x", "k")).await;
    expect_refused(&conn, "exchange 'amq.default'", vhost, |ch| publish_then_sync(ch, "", "app-q")).await;
    expect_refused(&conn, "queue 'other-q'", vhost, |ch| async move {
        ch.basic_get("other-q".into(), BasicGetOptions::default()).await
    })
    .await;
    expect_refused(&conn, "queue 'other-q'", vhost, |ch| async move {
        ch.basic_consume("other-q".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await
    })
    .await;
    expect_refused(&conn, "queue 'other-q'", vhost, |ch| async move {
        ch.queue_purge("other-q".into(), QueuePurgeOptions::default()).await
    })
    .await;
    // A dead-letter exchange of a new queue needs write on that exchange.
    expect_refused(&conn, "exchange 'other-x'", vhost, |ch| async move {
        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("other-x".into()));
        ch.queue_declare("app-dl".into(), QueueDeclareOptions::default(), arguments).await
    })
    .await;
    // A server-named queue is checked under its generated name.
    let ch = open_channel(&conn).await;
    let result = within(T, ch.queue_declare("".into(), QueueDeclareOptions::default(), FieldTable::default())).await;
    let error = expect_close(result, 403);
    let text = reply_text(&error).unwrap_or_default();
    assert!(text.starts_with("ACCESS_REFUSED - access to queue 'amq.gen-"), "{text}");
    // Passive declares are not checked, as in RabbitMQ.
    let ch = open_channel(&conn).await;
    within(
        T,
        ch.queue_declare(
            "other-q".into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        ),
    )
    .await
    .expect("passive declare of another's queue");
    // Nothing was lost by the refusals: guest's queue and exchange are still there.
    within(
        T,
        ach.queue_declare(
            "other-q".into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        ),
    )
    .await
    .expect("other-q survives");
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_are_separate_namespaces_and_deleting_one_closes_its_connections() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &["--segment-size", "64KiB"]);
    ctl_ok(data.path(), &["add_vhost", "blue"]);
    ctl_ok(data.path(), &["set_permissions", "-p", "blue", "guest", ".*", ".*", ".*"]);
    let root = try_connect(&uri_for(broker.uri(), "guest", "guest", "/")).await.expect("root vhost");
    let blue = try_connect(&uri_for(broker.uri(), "guest", "guest", "blue")).await.expect("blue vhost");
    let (rch, bch) = (open_channel(&root).await, open_channel(&blue).await);
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    for ch in [&rch, &bch] {
        within(T, ch.queue_declare("jobs".into(), durable, FieldTable::default())).await.expect("the broker answers");
    }
    within(T, bch.confirm_select(ConfirmSelectOptions::default())).await.expect("the broker answers");
    let body = vec![7u8; 4096];
    for _ in 0..500 {
        let confirm = within(
            T,
            bch.basic_publish(
                "".into(),
                "jobs".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            ),
        )
        .await
        .expect("the broker answers");
        within(T, confirm).await.expect("the broker answers");
    }
    within(
        T,
        rch.basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            b"root",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("the broker answers");
    let count = |ch: Channel| async move {
        within(
            T,
            ch.queue_declare(
                "jobs".into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            ),
        )
        .await
        .expect("the queue is there")
        .message_count()
    };
    assert_eq!(count(rch.clone()).await, 1, "the root vhost's jobs queue has only its own message");
    assert_eq!(count(bch.clone()).await, 500, "blue's jobs queue has its 500");
    let listed = ctl_ok(data.path(), &["list_queues", "-p", "blue", "-s", "name", "messages"]);
    assert_eq!(listed, "jobs\t500\n");
    let stored_before = dir_bytes(&data.path().join("messages"));
    assert!(stored_before > 2_000_000, "500 persistent 4 KiB messages are on disk: {stored_before}");

    ctl_ok(data.path(), &["delete_vhost", "blue"]);
    // blue's connection is closed with 320, RabbitMQ's text; the root one lives on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(T);
    while blue.status().connected() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!blue.status().connected(), "blue's connection was closed");
    assert_eq!(count(rch.clone()).await, 1);
    assert_eq!(ctl_ok(data.path(), &["list_vhosts", "-s"]), "/\n");
    let refused = try_connect(&uri_for(broker.uri(), "guest", "guest", "blue")).await;
    expect_close_text(refused.map(|_| ()), 530, "NOT_ALLOWED - vhost blue not found");
    // The deleted queue's messages give their disk space back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stored = dir_bytes(&data.path().join("messages"));
        if stored < stored_before / 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "disk not freed: {stored} bytes of {stored_before} remain");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // And the deletion survives a crash.
    broker.kill();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    let again = try_connect(&uri_for(broker.uri(), "guest", "guest", "blue")).await;
    expect_close(again.map(|_| ()), 530);
    ctl_ok(data.path(), &["add_vhost", "blue"]);
    ctl_ok(data.path(), &["set_permissions", "-p", "blue", "guest", ".*", ".*", ".*"]);
    let blue = try_connect(&uri_for(broker.uri(), "guest", "guest", "blue")).await.expect("a new blue");
    let bch = open_channel(&blue).await;
    let declared =
        within(T, bch.queue_declare("jobs".into(), durable, FieldTable::default())).await.expect("the broker answers");
    assert_eq!(declared.message_count(), 0, "a new vhost of the same name starts empty");
    broker.stop_cleanly();
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => dir_bytes(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_and_permissions_survive_kill_9() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    setup_app_user(data.path(), "apps");
    ctl_ok(data.path(), &["set_user_tags", "app", "monitoring", "management"]);
    ctl_ok(data.path(), &["delete_user", "guest"]);
    broker.kill();

    let broker = BrokerProcess::start(data.path(), 2, &[]);
    assert_eq!(ctl_ok(data.path(), &["list_users", "-s"]), "app\t[monitoring, management]\n");
    assert_eq!(ctl_ok(data.path(), &["list_permissions", "-p", "apps", "-s"]), "app\t^app-\t^app-\t^app-\n");
    try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await.expect("app logs in after the crash");
    let guest = try_connect(&uri_for(broker.uri(), "guest", "guest", "/")).await;
    expect_close(guest.map(|_| ()), 403);
    // Stored hashes, never passwords.
    let log = std::fs::read(data.path().join("definitions.log")).expect("definitions log");
    assert!(!log.windows(10).any(|window| window == b"app-secret"), "no plaintext password on disk");
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_closes_its_connections_and_update_secret_is_answered_as_rabbitmq() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    setup_app_user(data.path(), "apps");
    let conn = try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await.expect("app");
    within(T, conn.update_secret("app-secret".into(), "rotation".into())).await.expect("the password is accepted");
    // As RabbitMQ 3.10's internal backend: a password user's credentials do not expire, so
    // any new secret is taken (and never logged).
    within(T, conn.update_secret("another".into(), "rotation".into())).await.expect("any secret, as RabbitMQ");
    assert!(!broker.stderr().contains("another"), "the secret is not logged");

    let conn = try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await.expect("app again");
    let listed = ctl_ok(data.path(), &["list_connections", "-s", "user", "vhost"]);
    assert!(listed.contains("app\tapps\n"), "{listed}");
    ctl_ok(data.path(), &["delete_user", "app"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(T);
    while conn.status().connected() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!conn.status().connected(), "the deleted user's connection was closed");
    broker.stderr_containing("user 'app' is deleted", 5).await;
    broker.stop_cleanly();
}

#[test]
fn ctl_reports_errors_with_an_exit_code_and_a_reason() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let (code, _, err) = ctl(data.path(), &["list_users"]);
    assert_eq!(code, 69, "no broker running: {err}");
    assert!(err.contains("cannot reach the broker"), "{err}");
    let broker = BrokerProcess::start(data.path(), 1, &[]);
    let (code, _, err) = ctl(data.path(), &["set_permissions", "guest", "(", ".*", ".*"]);
    assert_eq!(code, 65);
    assert!(err.contains("invalid regular expression '('"), "{err}");
    let (code, _, err) = ctl(data.path(), &["delete_vhost", "nope"]);
    assert_eq!((code, err.trim()), (65, "Error:\nvhost 'nope' does not exist"));
    let (code, _, err) = ctl(data.path(), &["add_user", "x"]);
    assert_eq!((code, err.trim()), (64, "usage: add_user USER PASSWORD"));
    let (code, _, _) = ctl(data.path(), &["frobnicate"]);
    assert_eq!(code, 64);
    let long_name = "u".repeat(70_000);
    let (code, _, err) = ctl(data.path(), &["add_user", &long_name, "pw"]);
    assert_eq!(code, 65, "{err}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.path().join("ctl.sock")).expect("control socket").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the control socket is the owner's only");
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_export_imports_unchanged_and_its_users_keep_their_passwords() {
    if crate::common::process::external_broker() {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rabbitmq-3.10-definitions.json");
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    let out = ctl_ok(data.path(), &["import_definitions", fixture.to_str().expect("utf-8 path")]);
    assert!(out.contains("Definitions imported."), "{out}");
    // alice's hash is SHA-256, legacy's MD5 and carol's SHA-512: all log in with the
    // passwords they had on RabbitMQ.
    for (user, password, vhost) in
        [("alice", "wonderland-42", "staging"), ("legacy", "old-pass", "/"), ("carol", "c4r0l!", "/")]
    {
        let uri = uri_for(broker.uri(), user, password, vhost);
        match try_connect(&uri).await {
            Ok(conn) => conn.close(200, "bye".into()).await.expect("close"),
            // Logged in, but the file gives no permissions on this vhost.
            Err(error) => assert_eq!(reply_code(&error), Some(530), "{user}: {error}"),
        }
    }
    let refused = try_connect(&uri_for(broker.uri(), "alice", "not-her-password", "staging")).await;
    expect_close(refused.map(|_| ()), 403);
    let queues = ctl_ok(data.path(), &["list_queues", "-p", "staging", "-s", "name", "durable"]);
    assert_eq!(queues, "app.dead\ttrue\napp.lazy\ttrue\napp.orders\ttrue\n");

    // Export, import into a second broker, export again: the same document.
    let exported = data.path().join("exported.json");
    ctl_ok(data.path(), &["export_definitions", exported.to_str().expect("utf-8")]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&exported).expect("export").permissions());
    assert_eq!(mode & 0o777, 0o600, "an export holds password hashes: owner only");
    let second_data = DataDir::new();
    let second = BrokerProcess::start(second_data.path(), 1, &[]);
    ctl_ok(second_data.path(), &["import_definitions", exported.to_str().expect("utf-8")]);
    let again = second_data.path().join("again.json");
    ctl_ok(second_data.path(), &["export_definitions", again.to_str().expect("utf-8")]);
    let first: serde_json::Value = serde_json::from_slice(&std::fs::read(&exported).expect("read")).expect("json");
    let second_export: serde_json::Value = serde_json::from_slice(&std::fs::read(&again).expect("read")).expect("json");
    for key in ["users", "vhosts", "permissions", "queues", "exchanges", "bindings"] {
        assert_eq!(first[key], second_export[key], "{key} round-trips");
    }
    assert!(first["queues"].as_array().is_some_and(|queues| queues.len() == 5), "{}", first["queues"]);

    // A file of the wrong shape is refused whole and changes nothing.
    let bad = data.path().join("bad.json");
    std::fs::write(&bad, br#"{"users":[{"name":"mallory","tags":5}],"vhosts":[{"name":"evil"}]}"#).expect("write");
    let (code, _, err) = ctl(data.path(), &["import_definitions", bad.to_str().expect("utf-8")]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("users[0].tags"), "{err}");
    std::fs::write(&bad, &std::fs::read(&fixture).expect("fixture")[..300]).expect("truncate");
    let (code, _, err) = ctl(data.path(), &["import_definitions", bad.to_str().expect("utf-8")]);
    assert_eq!(code, 65, "a truncated file: {err}");
    let vhosts = ctl_ok(data.path(), &["list_vhosts", "-s"]);
    assert_eq!(vhosts, "/\nstaging\n");
    second.stop_cleanly();
    broker.kill();
    // The import survives kill -9.
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    try_connect(&uri_for(broker.uri(), "alice", "wonderland-42", "staging")).await.expect("alice after the crash");
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_and_a_definitions_file_given_at_start_are_used() {
    if crate::common::process::external_broker() {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rabbitmq-3.10-definitions.json");
    let data = DataDir::new();
    let args = ["--default-user", "admin", "--default-pass", "adm1n", "--default-vhost", "prod"];
    let broker = BrokerProcess::start(data.path(), 1, &args);
    try_connect(&uri_for(broker.uri(), "admin", "adm1n", "prod")).await.expect("the default user on its vhost");
    let guest = try_connect(&uri_for(broker.uri(), "guest", "guest", "prod")).await;
    expect_close(guest.map(|_| ()), 403);
    assert_eq!(ctl_ok(data.path(), &["list_users", "-s"]), "admin\t[administrator]\n");
    broker.stop_cleanly();

    // Defaults are made once: changing them later does not bring guest back.
    let fixture_arg = fixture.to_str().expect("utf-8");
    let broker = BrokerProcess::start(data.path(), 1, &["--definitions", fixture_arg]);
    assert!(ctl_ok(data.path(), &["list_users", "-s"]).starts_with("admin\t[administrator]\nalice\t"));
    try_connect(&uri_for(broker.uri(), "alice", "wonderland-42", "staging")).await.expect("alice from the file");
    broker.stop_cleanly();

    let bad = data.path().join("bad.json");
    std::fs::write(&bad, b"{\"users\": [").expect("write");
    let refused = BrokerProcess::try_start(data.path(), 1, &["--definitions", bad.to_str().expect("utf-8")]);
    let exited = refused.err().expect("a broken definitions file stops the start");
    assert!(exited.stderr.contains("cannot import definitions from"), "{}", exited.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_are_refused_without_harm_and_ctl_closes_a_connection() {
    use crate::common::raw::{method, Args, RawClient};
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    let address = addr_of(broker.uri());
    // A 64 KiB user name, a malformed PLAIN response, an unknown mechanism: each client is
    // refused (403 when it announces authentication_failure_close, as this one does not: the
    // socket closes), the broker logs one short line, and goes on.
    let mut capabilities = Args::new().shortstr("capabilities").u8(b'F');
    let inner = Args::new().shortstr("authentication_failure_close").u8(b't').u8(1);
    let inner_bytes = inner.raw(&[]).0;
    capabilities = capabilities.u32(inner_bytes.len() as u32).raw(&inner_bytes);
    let properties = capabilities.0;
    let long_user = vec![b'u'; 65_536];
    let mut response = vec![0u8];
    response.extend_from_slice(&long_user);
    response.extend_from_slice(b"\0pw");
    for (mechanism, response) in
        [("PLAIN", response.clone()), ("PLAIN", b"no-nul-here".to_vec()), ("KERBEROS", b"x".to_vec())]
    {
        let mut client = RawClient::connect(&address);
        client.send(crate::common::raw::PROTOCOL_HEADER);
        client.expect_method(10, 10);
        let start_ok = Args::new()
            .u32(properties.len() as u32)
            .raw(&properties)
            .shortstr(mechanism)
            .longstr(&response)
            .shortstr("en_US");
        client.send(&method(0, 10, 11, start_ok));
        match mechanism {
            "PLAIN" if response.len() > 1000 => {
                let text = client.expect_connection_close(403);
                assert!(text.starts_with("ACCESS_REFUSED - Login was refused"), "{text}");
            }
            _ => client.expect_eof(5),
        }
    }
    let log = broker.stderr_containing("invalid credentials", 5).await;
    assert!(log.lines().all(|line| line.len() < 1024), "no 64 KiB log line");
    // The broker still serves.
    let conn = connect(broker.uri()).await;
    let ch = open_channel(&conn).await;
    within(T, ch.queue_declare("still-here".into(), QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .expect("the broker still serves");

    // close_connection by the name list_connections shows: the client hears 320 and the reason.
    let names = ctl_ok(data.path(), &["list_connections", "-s", "name"]);
    let name = names.lines().next().expect("one connection").to_string();
    let out = ctl_ok(data.path(), &["close_connection", &name, "maintenance window"]);
    assert!(out.contains("Closing connection"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(T);
    while conn.status().connected() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!conn.status().connected(), "closed by the operator");
    broker.stderr_containing("maintenance window", 5).await;
    let (code, _, err) = ctl(data.path(), &["close_connection", "1.2.3.4:5 -> 6.7.8.9:10", "x"]);
    assert_eq!(code, 65, "{err}");
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_and_user_limits_refuse_as_rabbitmq_and_survive_a_restart() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    setup_app_user(data.path(), "apps");
    ctl_ok(data.path(), &["set_vhost_limits", "-p", "apps", r#"{"max-connections": 2, "max-queues": 1}"#]);
    ctl_ok(data.path(), &["set_user_limits", "app", r#"{"max-connections": 1}"#]);
    assert_eq!(ctl_ok(data.path(), &["list_user_limits", "app", "-q"]), "{\"max-connections\":1}\n");

    let app = try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await.expect("app's one connection");
    let second = try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await;
    expect_close_text(
        second.map(|_| ()),
        530,
        "NOT_ALLOWED - connection refused for user 'app': user connection limit (1) is reached",
    );
    let _guest = try_connect(&uri_for(broker.uri(), "guest", "guest", "apps")).await.expect("the vhost's second");
    let third = try_connect(&uri_for(broker.uri(), "guest", "guest", "apps")).await;
    expect_close_text(
        third.map(|_| ()),
        530,
        "NOT_ALLOWED - access to vhost 'apps' refused for user 'guest': connection limit (2) is reached",
    );
    let ch = open_channel(&app).await;
    within(T, ch.queue_declare("app-1".into(), QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .expect("the broker answers");
    let over = within(T, ch.queue_declare("app-2".into(), QueueDeclareOptions::default(), FieldTable::default())).await;
    expect_close_text(
        over,
        406,
        "PRECONDITION_FAILED - cannot declare queue 'app-2': queue limit in vhost 'apps' (1) is reached",
    );
    app.close(200, "bye".into()).await.ok();
    // A closed connection makes room.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    try_connect(&uri_for(broker.uri(), "app", "app-secret", "apps")).await.expect("room again");
    broker.kill();

    let _broker = BrokerProcess::start(data.path(), 2, &[]);
    let limits = ctl_ok(data.path(), &["list_vhost_limits", "-p", "apps", "-q"]);
    assert_eq!(limits, "{\"max-connections\":2,\"max-queues\":1}\n");
    ctl_ok(data.path(), &["clear_vhost_limits", "-p", "apps"]);
    assert_eq!(ctl_ok(data.path(), &["list_vhost_limits", "-p", "apps", "-q"]), "{}\n");
    let (code, _, err) = ctl(data.path(), &["set_vhost_limits", "-p", "apps", r#"{"max-bananas": 1}"#]);
    assert_eq!(code, 65, "{err}");
}

#[test]
fn ctl_finds_the_broker_through_its_config_file() {
    if crate::common::process::external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 1, &[]);
    let config = data.path().join("ctl-test.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", data.path().to_str().expect("utf-8"))).expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_spatemq"))
            .arg("ctl")
            .args(args)
            .env_remove("SPATEMQ_DATA_DIR")
            .env_remove("SPATEMQ_CONFIG")
            .output()
            .expect("run spatemq ctl")
    };
    let output = run(&["--config", config.to_str().expect("utf-8"), "list_users", "-s"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "guest\t[administrator]\n");
    // A config file with a typo is refused with its line, not taken for the default.
    std::fs::write(&config, "data_dri = \"/nowhere\"\n").expect("write");
    let output = run(&["--config", config.to_str().expect("utf-8"), "list_users"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1"), "{}", String::from_utf8_lossy(&output.stderr));
    broker.stop_cleanly();
}
