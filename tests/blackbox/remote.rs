//! A client on another host (a network namespace the test makes): guest is refused there, as
//! RabbitMQ refuses it outside loopback, and a user made with `spatemq ctl` logs in.

use crate::accounts::{ctl_ok, uri_for};
use crate::common::netns::NetNs;
use crate::common::process::{BrokerProcess, DataDir};
use crate::common::*;

/// Connects from inside `netns` with lapin on a runtime of that thread; then declares a queue
/// and publishes to it so that the login is shown to be usable.
fn remote_session(netns: &NetNs, uri: String) -> Result<(), String> {
    netns.run(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let conn = within(T, Connection::connect(&uri, ConnectionProperties::default()))
                .await
                .map_err(|error| reply_text(&error).unwrap_or_else(|| error.to_string()))?;
            let ch = conn.create_channel().await.map_err(|error| error.to_string())?;
            ch.queue_declare("remote-jobs".into(), QueueDeclareOptions::default(), FieldTable::default())
                .await
                .map_err(|error| error.to_string())?;
            conn.close(200, "bye".into()).await.map_err(|error| error.to_string())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_is_refused_from_another_host_and_a_ctl_user_is_not() {
    if crate::common::process::external_broker() {
        return;
    }
    let netns = NetNs::create();
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &["--bind", &netns.host_ip]);
    let port = broker.uri().rsplit(':').next().and_then(|tail| tail.split('/').next()).unwrap_or_default().to_string();
    let remote_uri =
        |user: &str, password: &str| uri_for(&format!("amqp://x@{}:{port}/", netns.host_ip), user, password, "/");

    let refused = remote_session(&netns, remote_uri("guest", "guest")).expect_err("guest from another host");
    assert_eq!(
        refused,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
    );
    let logged = broker.stderr_containing("can only connect via localhost", 5).await;
    assert!(logged.contains(&netns.remote_ip), "the log names the remote address: {logged}");

    ctl_ok(data.path(), &["add_user", "worker", "w0rker-pass"]);
    ctl_ok(data.path(), &["set_permissions", "worker", ".*", ".*", ".*"]);
    remote_session(&netns, remote_uri("worker", "w0rker-pass")).expect("a ctl user logs in from another host");

    // guest still works from loopback.
    let local = connect(broker.uri()).await;
    let ch = open_channel(&local).await;
    let declared = within(
        T,
        ch.queue_declare(
            "remote-jobs".into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        ),
    )
    .await;
    declared.expect("the remote worker's queue exists");
    broker.stop_cleanly();
}
