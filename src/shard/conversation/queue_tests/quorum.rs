//! Quorum queues (`x-queue-type: quorum`) on one node, frame in and frame out: the declare
//! flags and arguments RabbitMQ 3.10 refuses, redeclares of another type, the global-qos
//! refusal and queue.delete's flags. (Messages of a quorum queue are always stored, and these
//! conversations run without a store: `x-delivery-count` is checked in `broker::queue_tests`.)

use super::*;

fn quorum_declare(name: &str, durable: bool, extra: &[(&str, AMQPValue)]) -> AMQPClass {
    let mut arguments = table(extra);
    arguments.insert("x-queue-type".into(), text("quorum"));
    declare_method(queue::Declare { durable, arguments, ..declare(name) })
}

#[test]
fn a_durable_quorum_queue_is_declared_and_redeclared() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, quorum_declare("work", true, &[]), declare_ok("work", 0, 0));
    assert_answer(&mut client, quorum_declare("work", true, &[]), declare_ok("work", 0, 0));
}

#[test]
fn a_non_durable_quorum_queue_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let text = "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'work' in vhost '/'";
    assert_channel_closed(&mut client, quorum_declare("work", false, &[]), 406, text, DECLARE);
}

#[test]
fn an_exclusive_quorum_queue_is_406_before_its_durability() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let mut arguments = table(&[]);
    arguments.insert("x-queue-type".into(), text("quorum"));
    let exclusive = declare_method(queue::Declare { exclusive: true, durable: true, arguments, ..declare("work") });
    let text = "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 'work' in vhost '/'";
    assert_channel_closed(&mut client, exclusive, 406, text, DECLARE);
}

#[test]
fn a_server_named_quorum_queue_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let text = "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue";
    assert_channel_closed(&mut client, quorum_declare("", true, &[]), 406, text, DECLARE);
}

#[test]
fn x_max_priority_on_a_quorum_queue_is_406_naming_the_queue_type() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let method = quorum_declare("work", true, &[("x-max-priority", AMQPValue::LongInt(5))]);
    let text = "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'work' in vhost '/' of queue type rabbit_quorum_queue";
    assert_channel_closed(&mut client, method, 406, text, DECLARE);
}

#[test]
fn a_classic_queue_redeclared_as_quorum_is_inequivalent() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(
        &mut client,
        declare_method(queue::Declare { durable: true, ..declare("work") }),
        declare_ok("work", 0, 0),
    );
    let text = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'work' in vhost '/': received the value 'quorum' of type 'longstr' but current is none";
    assert_channel_closed(&mut client, quorum_declare("work", true, &[]), 406, text, DECLARE);
}

#[test]
fn a_quorum_consumer_on_a_channel_with_a_global_prefetch_is_540() {
    let broker = Broker::new(2);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, quorum_declare("work", true, &[]), declare_ok("work", 0, 0));
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 10, global: true })));
    assert_eq!(client.methods(), vec![(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})))]);
    client.send(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "work".into(),
            consumer_tag: "c".into(),
            ..Default::default()
        })),
    );
    let methods = client.methods();
    let expected = (540, "NOT_IMPLEMENTED - queue 'work' in vhost '/' does not support global qos".to_string(), 60, 20);
    assert_eq!(connection_close(&methods), Some(expected), "{methods:?}");
}

#[test]
fn deleting_a_quorum_queue_if_empty_is_540() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, quorum_declare("work", true, &[]), declare_ok("work", 0, 0));
    client.send(1, AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete { if_empty: true, ..delete("work") })));
    let methods = client.methods();
    let text = "NOT_IMPLEMENTED - cannot delete queue 'work' in vhost '/'. queue.delete operations with if-empty flag set are not supported by quorum queues";
    assert_eq!(connection_close(&methods), Some((540, text.to_string(), 50, 40)), "{methods:?}");
}
