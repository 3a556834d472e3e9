//! Message TTL of 0: expired messages are not returned by basic.get but reach a ready consumer.

use super::*;

fn get(name: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: name.into(), no_ack: true }))
}

fn get_empty() -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {}))
}

#[test]
fn a_message_of_a_queue_with_x_message_ttl_0_is_not_returned_by_basic_get() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(0))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    publish(&mut client, "", "work", 1);
    assert_answer(&mut client, get("work"), get_empty());
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn a_message_with_expiration_0_is_not_returned_by_basic_get() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    let properties = AMQPProperties::default().with_expiration("0".into());
    client.publish(1, "", "work", &properties, b"m");
    assert!(client.output().is_empty(), "a publish was answered");
    assert_answer(&mut client, get("work"), get_empty());
}

#[test]
fn a_message_with_x_message_ttl_0_reaches_a_consumer_that_can_take_it() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(0))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 0);
    client.publish(1, "", "work", &AMQPProperties::default(), b"m");
    let output = client.output();
    assert!(
        matches!(output.as_slice(), [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::Deliver(_)), .. }, ..]),
        "{output:?}"
    );
}
