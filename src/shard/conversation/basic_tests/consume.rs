//! basic.consume and basic.cancel: missing and exclusive queues, consumer tags, priorities and cancel-ok.

use super::*;

#[test]
fn consume_on_a_missing_queue_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, consume("missing", "c"));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no queue 'missing' in vhost '/'", 60, 20));
}

#[test]
fn consume_without_a_queue_name_and_no_queue_declared_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, consume("", "c"));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no previously declared queue", 60, 20));
}

#[test]
fn consume_without_a_queue_name_consumes_the_queue_declared_last() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "first");
    declare_queue(&mut client, "last");
    start_consumer(&mut client, "", "c");
    publish_text(&mut client, "first", "not this");
    publish_text(&mut client, "last", "this");
    let received = deliveries(&client.output());
    assert_eq!(bodies(&received), vec![b"this" as &[u8]]);
}

#[test]
fn consume_on_another_connections_exclusive_queue_closes_the_channel_with_405() {
    let broker = Broker::new(3);
    let mut owner = client_on(&broker, 1);
    owner.send(1, declare_with("private", true));
    owner.output();
    let mut other = client_on(&broker, 2);
    other.send(1, consume("private", "c"));
    assert_channel_closed(&mut other, (405, LOCKED_EXCLUSIVE, 60, 20));
}

#[test]
fn the_owner_of_an_exclusive_queue_may_consume_from_it() {
    let broker = Broker::new(2);
    let mut owner = client_on(&broker, 1);
    owner.send(1, declare_with("private", true));
    owner.output();
    start_consumer(&mut owner, "private", "c");
}

#[test]
fn an_exclusive_consume_on_a_queue_with_a_consumer_closes_the_channel_with_403() {
    let broker = Broker::new(3);
    let mut first = client_on(&broker, 1);
    declare_queue(&mut first, "shared");
    start_consumer(&mut first, "shared", "first");
    let mut second = client_on(&broker, 2);
    let options = ConsumeOptions { exclusive: true, ..ConsumeOptions::default() };
    second.send(1, consume_with("shared", "second", options, FieldTable::default()));
    assert_channel_closed(&mut second, (403, "ACCESS_REFUSED - queue 'shared' in vhost '/' in exclusive use", 60, 20));
}

#[test]
fn a_consume_on_a_queue_with_an_exclusive_consumer_closes_the_channel_with_403() {
    let broker = Broker::new(3);
    let mut first = client_on(&broker, 1);
    declare_queue(&mut first, "taken");
    let options = ConsumeOptions { exclusive: true, ..ConsumeOptions::default() };
    first.send(1, consume_with("taken", "first", options, FieldTable::default()));
    first.output();
    let mut second = client_on(&broker, 2);
    second.send(1, consume("taken", "second"));
    assert_channel_closed(&mut second, (403, "ACCESS_REFUSED - queue 'taken' in vhost '/' in exclusive use", 60, 20));
}

#[test]
fn an_exclusive_consume_on_a_single_active_consumer_queue_closes_the_channel_with_403() {
    let broker = Broker::new(3);
    let mut client = client_on(&broker, 1);
    let mut arguments = FieldTable::default();
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    let declare = match declare("single") {
        AMQPClass::Queue(queue::AMQPMethod::Declare(method)) => queue::Declare { arguments, ..method },
        other => panic!("declare() builds a queue.declare, not {other:?}"),
    };
    client.send(1, AMQPClass::Queue(queue::AMQPMethod::Declare(declare)));
    client.output();
    // No consumer yet: RabbitMQ refuses an exclusive consumer on such a queue all the same.
    let options = ConsumeOptions { exclusive: true, ..ConsumeOptions::default() };
    client.send(1, consume_with("single", "t", options, FieldTable::default()));
    assert_channel_closed(&mut client, (403, "ACCESS_REFUSED - queue 'single' in vhost '/' in exclusive use", 60, 20));
}

#[test]
fn once_the_exclusive_consumer_cancels_others_may_consume() {
    let broker = Broker::new(3);
    let mut first = client_on(&broker, 1);
    declare_queue(&mut first, "released");
    let options = ConsumeOptions { exclusive: true, ..ConsumeOptions::default() };
    first.send(1, consume_with("released", "first", options, FieldTable::default()));
    first.output();
    first.send(1, cancel("first", false));
    first.output();
    let mut second = client_on(&broker, 2);
    start_consumer(&mut second, "released", "second");
}

#[test]
fn reusing_a_consumer_tag_on_a_channel_closes_the_connection_with_530() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.send(1, consume("tagged", "same"));
    assert_connection_closed(&mut client, (530, "NOT_ALLOWED - attempt to reuse consumer tag 'same'", 60, 20));
}

#[test]
fn reusing_a_consumer_tag_names_basic_consume_in_connection_close() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.send(1, consume("tagged", "same"));
    assert_connection_closed(&mut client, (530, "NOT_ALLOWED - attempt to reuse consumer tag 'same'", 60, 20));
}

#[test]
fn reusing_a_consumer_tag_on_a_missing_queue_closes_the_connection_with_530() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.send(1, consume("missing", "same"));
    assert_connection_closed(&mut client, (530, "NOT_ALLOWED - attempt to reuse consumer tag 'same'", 60, 20));
}

#[test]
fn the_same_consumer_tag_on_two_channels_is_allowed() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.open_channel(2);
    client.send(2, consume("tagged", "same"));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(2, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)))] if ok.consumer_tag.as_str() == "same"),
        "{methods:?}"
    );
}

#[test]
fn an_empty_consumer_tag_gets_a_generated_amq_ctag() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "anonymous");
    client.send(1, consume("anonymous", ""));
    client.send(1, consume("anonymous", ""));
    let tags: Vec<String> = client
        .methods()
        .into_iter()
        .map(|(_, method)| match method {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) => ok.consumer_tag.to_string(),
            other => panic!("expected consume-ok, got {other:?}"),
        })
        .collect();
    assert_eq!(tags.len(), 2);
    for tag in &tags {
        let suffix = tag.strip_prefix("amq.ctag-").unwrap_or_else(|| panic!("{tag} lacks amq.ctag-"));
        assert_eq!(suffix.len(), 22, "{tag}");
        assert!(suffix.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{tag}");
    }
    assert_ne!(tags[0], tags[1]);
}

#[test]
fn consume_ok_precedes_the_first_delivery() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "waiting", 2);
    let mut client = client_on(&broker, shard_away_from(&broker, "waiting"));
    client.send(1, consume("waiting", "c"));
    let output = client.output();
    assert!(
        matches!(&output[0], Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) } if ok.consumer_tag.as_str() == "c"),
        "{output:?}"
    );
    let received = deliveries(&output);
    assert_eq!(bodies(&received), vec![b"m1" as &[u8], b"m2"]);
    assert!(received.iter().all(|message| message.consumer_tag == "c" && message.channel == 1 && !message.redelivered));
}

#[test]
fn consume_with_nowait_sends_no_consume_ok_but_delivers() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "quiet", 1);
    let mut client = client_on(&broker, 1);
    let options = ConsumeOptions { nowait: true, ..ConsumeOptions::default() };
    client.send(1, consume_with("quiet", "c", options, FieldTable::default()));
    let output = client.output();
    assert!(
        matches!(&output[0], Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::Deliver(_)), .. }),
        "{output:?}"
    );
    assert_eq!(bodies(&deliveries(&output)), vec![b"m1" as &[u8]]);
}

#[test]
fn an_invalid_consumer_timeout_argument_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "timed");
    let mut arguments = FieldTable::default();
    arguments.insert("x-consumer-timeout".into(), AMQPValue::LongString("soon".into()));
    client.send(1, consume_with("timed", "c", ConsumeOptions::default(), arguments));
    assert_channel_closed(
        &mut client,
        (
            406,
            "PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue 'timed' in vhost '/': {unacceptable_type,longstr}",
            60,
            20,
        ),
    );
}

#[test]
fn a_consumer_with_a_higher_priority_gets_the_messages() {
    let broker = Broker::new(3);
    let mut low = client_on(&broker, 1);
    declare_queue(&mut low, "ranked");
    start_consumer(&mut low, "ranked", "low");
    let mut high = client_on(&broker, 2);
    let mut arguments = FieldTable::default();
    arguments.insert("x-priority".into(), AMQPValue::LongInt(10));
    high.send(
        1,
        consume_with("ranked", "high", ConsumeOptions { no_ack: true, ..ConsumeOptions::default() }, arguments),
    );
    high.output();
    for _ in 0..3 {
        publish_text(&mut low, "ranked", "x");
    }
    assert!(deliveries(&low.output()).is_empty());
    assert_eq!(deliveries(&high.output()).len(), 3);
}

#[test]
fn a_non_integer_consumer_priority_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "ranked");
    let mut arguments = FieldTable::default();
    arguments.insert("x-priority".into(), AMQPValue::LongString("high".into()));
    client.send(1, consume_with("ranked", "c", ConsumeOptions::default(), arguments));
    assert_channel_closed(
        &mut client,
        (
            406,
            "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'ranked' in vhost '/': \"expected integer, got longstr\"",
            60,
            20,
        ),
    );
}

#[test]
fn a_non_boolean_cancel_on_ha_failover_closes_the_channel_with_406_and_a_boolean_is_accepted() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "failover");
    let mut accepted = FieldTable::default();
    accepted.insert("x-cancel-on-ha-failover".into(), AMQPValue::Boolean(true));
    client.send(1, consume_with("failover", "ok", ConsumeOptions::default(), accepted));
    assert!(matches!(client.methods().as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))]));
    let mut refused = FieldTable::default();
    refused.insert("x-cancel-on-ha-failover".into(), AMQPValue::LongString("yes".into()));
    client.send(1, consume_with("failover", "c", ConsumeOptions::default(), refused));
    assert_channel_closed(
        &mut client,
        (
            406,
            "PRECONDITION_FAILED - invalid arg 'x-cancel-on-ha-failover' for queue 'failover' in vhost '/': {unacceptable_type,longstr}",
            60,
            20,
        ),
    );
}

#[test]
fn cancel_is_answered_with_cancel_ok_and_stops_deliveries() {
    let broker = Broker::new(3);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "stopped");
    start_consumer(&mut client, "stopped", "c");
    client.send(1, cancel("c", false));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)))] if ok.consumer_tag.as_str() == "c"),
        "{methods:?}"
    );
    queue_with_messages(&broker, "stopped", 1);
    assert!(deliveries(&client.output()).is_empty());
    client.send(1, get("stopped", true));
    assert!(got(&client.output()).is_some(), "the message waits in the queue");
}

#[test]
fn cancel_of_an_unknown_consumer_tag_is_answered_with_cancel_ok() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, cancel("nobody", false));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)))] if ok.consumer_tag.as_str() == "nobody"),
        "{methods:?}"
    );
}

#[test]
fn cancel_with_nowait_sends_nothing_and_stops_deliveries() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "silent");
    start_consumer(&mut client, "silent", "c");
    client.send(1, cancel("c", true));
    assert!(client.output().is_empty());
    queue_with_messages(&broker, "silent", 1);
    assert!(deliveries(&client.output()).is_empty());
}

#[test]
fn deliveries_of_a_cancelled_consumer_can_still_be_acked() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "pending", 2);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "pending", "c").len(), 2);
    client.send(1, cancel("c", false));
    client.output();
    client.send(1, ack(2, true));
    assert!(client.output().is_empty(), "the acks are accepted");
    client.send(1, get("pending", true));
    assert!(got(&client.output()).is_none(), "the acked messages are gone");
}
