//! queue.declare: declare-ok, passive declares, redeclares, the amq. prefix, server-only queue methods.

use super::*;

#[test]
fn declare_answers_declare_ok_with_the_name_and_zero_counts() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, declare_method(declare("work")), declare_ok("work", 0, 0));
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn declare_with_nowait_sends_nothing_and_creates_the_queue() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_method(queue::Declare { nowait: true, ..declare("work") }));
    assert!(client.output().is_empty());
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn redeclare_reports_ready_messages_and_consumers() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 1);
    assert_answer(&mut client, declare_method(declare("work")), declare_ok("work", 2, 1));
}

#[test]
fn passive_declare_from_another_shard_reports_the_counts() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 0);
    declared(&mut owner, "work");
    consume(&mut owner, 1, "work", "c1", 1);
    let mut publisher = connected(&broker, 2);
    publish(&mut publisher, "", "work", 3);
    let mut observer = connected(&broker, 1);
    assert_eq!(counts(&mut observer, "work"), (2, 1));
}

#[test]
fn passive_declare_counts_every_message_the_channel_published_before() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 5);
    assert_eq!(counts(&mut client, "work"), (5, 0));
}

#[test]
fn passive_declare_with_nowait_sends_nothing() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    client.send(1, declare_method(queue::Declare { passive: true, nowait: true, ..declare("work") }));
    assert!(client.output().is_empty());
}

#[test]
fn passive_declare_of_a_missing_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        declare_method(queue::Declare { passive: true, ..declare("nowhere") }),
        404,
        "NOT_FOUND - no queue 'nowhere' in vhost '/'",
        DECLARE,
    );
}

#[test]
fn passive_declare_ignores_flags_and_arguments() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    let passive = queue::Declare {
        passive: true,
        durable: true,
        auto_delete: true,
        arguments: table(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
        ..declare("work")
    };
    assert_answer(&mut client, declare_method(passive), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_other_durability_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        declare_method(queue::Declare { durable: true, ..declare("work") }),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'work' in vhost '/': received 'true' but current is 'false'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_other_auto_delete_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let auto_delete = queue::Declare { auto_delete: true, ..declare("work") };
    assert_answer(&mut client, declare_method(auto_delete), declare_ok("work", 0, 0));
    assert_channel_closed(
        &mut client,
        declare_method(declare("work")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'work' in vhost '/': received 'false' but current is 'true'",
        DECLARE,
    );
}

#[test]
fn declare_with_the_reserved_amq_prefix_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        declare_method(declare("amq.work")),
        403,
        "ACCESS_REFUSED - queue name 'amq.work' contains reserved prefix 'amq.*'",
        DECLARE,
    );
    assert!(!queue_exists(&mut client, 2, "amq.work"));
}

#[test]
fn passive_declare_of_a_missing_amq_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        declare_method(queue::Declare { passive: true, ..declare("amq.work") }),
        404,
        "NOT_FOUND - no queue 'amq.work' in vhost '/'",
        DECLARE,
    );
}

#[test]
fn a_queue_method_the_server_sends_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_ok("work", 0, 0));
    let methods = client.methods();
    let (code, text, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!((code, text.as_str()), (503, "COMMAND_INVALID - unimplemented method"));
    assert!(client.closed);
}

#[test]
fn a_queue_method_the_server_sends_is_an_unimplemented_method() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_ok("work", 0, 0));
    let methods = client.methods();
    assert_eq!(connection_close(&methods), Some((503, "COMMAND_INVALID - unimplemented method".into(), 50, 11)));
}
